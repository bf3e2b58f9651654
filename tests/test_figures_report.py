"""Figures (plot, Fig. 7 and Fig. 8 analogues) and the report page."""

from __future__ import annotations

import re
import sys
import types
from fractions import Fraction
from importlib import resources

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from metasrgan import evaluation, figures
from metasrgan.cli import main
from metasrgan.registry import make
from metasrgan.report import build_report, markdown_to_html


@pytest.fixture(autouse=True)
def _crop_module(monkeypatch):
    try:
        import metasrgan.data.crop  # noqa: F401
    except ImportError:  # stand-in until the data module lands: the centre window
        module = types.ModuleType("metasrgan.data.crop")
        module.max_information_crop = lambda im, size: (
            (im.shape[0] - size[0]) // 2,
            (im.shape[1] - size[1]) // 2,
            *size,
        )
        monkeypatch.setitem(sys.modules, "metasrgan.data.crop", module)


@pytest.fixture(scope="module")
def image():
    path = resources.files("metasrgan") / "samples" / "colin27_val.nii.gz"
    data = np.asarray(nib.load(str(path)).dataobj[40:120, 50:140, 5], dtype=np.float32) / 255
    return evaluation.EvalImage("colin27_val:z005", data)


@pytest.fixture(scope="module")
def methods():
    torch.manual_seed(0)
    meta = make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1, "norm": "none"}})
    srgan = make({"name": "srgan", "args": {"features": 8, "blocks": 1}})
    return [
        evaluation.bicubic_method(),
        evaluation.Method("Meta", meta.eval(), 10, None, "test"),
        evaluation.Method("SRGAN", srgan.eval(), 5, Fraction(2), "test"),
    ]


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.fixture
def saved(monkeypatch):
    """The matplotlib figures the figure functions save, for checking what they show."""
    figs = []
    original = figures._save

    def keep(fig, path):
        figs.append(fig)
        return original(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    return figs


def _panels(fig):
    """``(title, xlabel, image array)`` of every axes that shows an image (insets too)."""
    every = [a for ax in fig.axes for a in (ax, *ax.child_axes)]
    return [(a.get_title(), a.get_xlabel(), a.images[0].get_array()) for a in every if a.images]


METRIC = re.compile(r"^\d+\.\d\d dB / [01]\.\d{4}$")


def test_figure7_shows_hr_and_every_method_with_its_metrics(tmp_path, image, methods, saved):
    p7 = figures.figure7(image, methods, tmp_path / "fig7.png", crop_size=(48, 48))
    w7, h7 = _png_size(p7)
    assert w7 > 3 * h7  # HR + 3 methods side by side
    main_panels = [p for p in _panels(saved[-1]) if p[0]]
    assert [t for t, _, _ in main_panels] == ["HR (ground truth)", "Bicubic", "Meta", "SRGAN"]
    assert main_panels[0][1] == "PSNR / SSIM"
    assert all(METRIC.match(x) for _, x, _ in main_panels[1:])
    hr = main_panels[0][2]
    assert hr.shape == (48, 48) and float(np.ptp(hr)) > 0.3  # a real slice, not blank
    for _, _, sr in main_panels[1:]:
        assert sr.shape == hr.shape and not np.array_equal(sr, hr)
    insets = [p for p in _panels(saved[-1]) if not p[0]]
    assert len(insets) == 4 and all(i[2].shape[0] < 48 for i in insets)  # zoomed details
    with pytest.raises(ValueError, match="no method"):
        figures.figure7(image, methods[2:], tmp_path / "x.png", scale=Fraction(3))


def test_figure8_shows_one_slice_through_every_scale(tmp_path, image, methods, saved):
    scales = [Fraction(3, 2), Fraction(2), Fraction(37, 10)]
    p8 = figures.figure8(image, methods, scales, tmp_path / "fig8.png", crop_size=(48, 48))
    w8, h8 = _png_size(p8)
    assert w8 > h8
    panels = _panels(saved[-1])
    # HR once, then bicubic and Meta (SRGAN is fixed-scale: no row) at each of 3 scales
    assert len(panels) == 1 + 2 * len(scales)
    assert [t for t, _, _ in panels[:4]] == ["HR (ground truth)", "x1.5", "x2", "x3.7"]
    assert sum(bool(METRIC.match(x)) for _, x, _ in panels) == 2 * len(scales)
    rows = [ax.get_ylabel() for ax in saved[-1].axes if ax.get_ylabel()]
    assert rows == ["Bicubic", "Meta"]
    # every panel is an upscaling of the exact HR crop (same size), each different
    sizes = {p[2].shape for p in panels}
    assert len(sizes) <= len(scales) + 1 and all(min(s) >= 40 for s in sizes)


def test_plot_sweep(tmp_path, methods):
    rows = []
    for m in methods:
        for s in (Fraction(3, 2), Fraction(2), Fraction(3)):
            if m.runs_at(s):
                rows.append({"method": m.label, "scale": s, "region": "crop", "psnr": 30 - s,
                             "ssim": 0.9, "image": "a"})  # fmt: skip
    summary = evaluation.summarize(rows, methods)
    assert _png_size(figures.plot_sweep(summary, methods, tmp_path / "plot.png"))[0] > 0


def test_figure_choices(image):
    sweep = evaluation.parse_scales("1.1:4.0:0.1")
    assert figures.pick_figure_scales(sweep) == [Fraction(k, 2) for k in range(3, 9)]
    assert figures.pick_figure_scales([Fraction(11, 10), Fraction(13, 10)]) == [
        Fraction(11, 10),
        Fraction(13, 10),
    ]
    other = evaluation.EvalImage("empty", np.zeros_like(image.array))
    assert figures.pick_figure_image([other, image]) is image
    assert figures.pick_figure_image([other, image], "0") is other
    assert figures.pick_figure_image([other, image], "colin27_val:z005") is image
    with pytest.raises(ValueError, match="figure-image"):
        figures.pick_figure_image([image], "nope")
    # the inset goes where it hides least of the zoomed box (box in the top right here)
    assert figures._inset_corner((100, 100), (5, 70), 20) != [0.58, 0.58, 0.42, 0.42]


def test_per_source_table():
    rows = [
        {"image": f"{src}:z00{k}", "method": m, "scale": Fraction(2), "region": "crop",
         "psnr": p + k, "ssim": 0.5}
        for src, p in (("a", 30.0), ("b", 20.0))
        for m in ("Bicubic", "Meta")
        for k in (0, 2)
    ]  # fmt: skip
    methods = [evaluation.bicubic_method(), evaluation.Method("Meta", None, 1)]
    text = evaluation.by_source(rows, methods)
    assert "| a | 31.00 / 0.5000 | 31.00 / 0.5000 |" in text
    assert "| b | 21.00 / 0.5000 |" in text
    assert evaluation.by_source([r for r in rows if r["image"].startswith("a")], methods) == ""


def test_markdown_to_html_tables_lists_and_images():
    text = "# T\n\n- **bold** `code`\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![cap](x.png)\n"
    page = re.sub(r">\n\s*<", "><", markdown_to_html(text, lambda src: "IMG:" + src))
    assert "<h1>T</h1>" in page and "<li><strong>bold</strong> <code>code</code></li>" in page
    assert "<th>a</th><th>b</th>" in page and "<td>1</td><td>2</td>" in page
    assert '<img alt="cap" src="IMG:x.png">' in page and "---" not in page
    assert "&lt;script&gt;" in markdown_to_html("a <script> b & c")  # raw HTML is escaped


def test_report_gathers_nested_runs(tmp_path, capsys):
    run = tmp_path / "run"
    for sub in ("eval_bicubic", "eval_kspace"):
        (run / sub).mkdir(parents=True)
        (run / sub / "table.md").write_text(
            f"# Evaluation\n\n| a | b |\n|---|---|\n| {sub} | 2 |\n"
        )
        Image.new("L", (8, 8)).save(run / sub / "fig8.png")
        (run / sub / "table.csv").write_text("a,b\n1,2\n")
    (run / ".hidden").mkdir()
    Image.new("L", (8, 8)).save(run / ".hidden" / "skip.png")
    md_path, html_path = build_report(run)
    md = md_path.read_text()
    assert "## eval_bicubic" in md and "### Evaluation" in md and "## eval_kspace" in md
    assert "(eval_kspace/fig8.png)" in md and "[table.csv](eval_bicubic/table.csv)" in md
    assert "skip.png" not in md
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 2 and "<td>eval_kspace</td>" in page

    assert main(["report", str(run), "--format", "html", "--link-images"]) == 0
    assert 'src="eval_bicubic/fig8.png"' in (run / "report.html").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "metasrgan evaluate" in capsys.readouterr().err
