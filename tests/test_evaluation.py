"""The evaluation protocol and ``metasrgan evaluate`` on small real MRI slices."""

from __future__ import annotations

import csv
import json
import math
import sys
import types
from fractions import Fraction

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures.models import with_random_weights

from metasrgan import evaluation
from metasrgan.checkpoint import save_model
from metasrgan.cli import main
from metasrgan.registry import make

skm = pytest.importorskip("skimage.metrics")


def _standin_max_information_crop(image, size):
    """Window with the largest intensity sum (stand-in until metasrgan.data.crop exists)."""
    h, w = size
    c = np.pad(np.cumsum(np.cumsum(np.asarray(image, np.float64), 0), 1), ((1, 0), (1, 0)))
    sums = c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), h, w


@pytest.fixture(autouse=True)
def _crop_module(monkeypatch):
    try:
        import metasrgan.data.crop  # noqa: F401
    except ImportError:
        module = types.ModuleType("metasrgan.data.crop")
        module.max_information_crop = _standin_max_information_crop
        monkeypatch.setitem(sys.modules, "metasrgan.data.crop", module)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Meta-SRGAN with random weights (so it differs from bicubic) and a tiny SRGAN."""
    folder = tmp_path_factory.mktemp("models")
    meta = with_random_weights(
        {"name": "meta-srgan", "args": {"features": 8, "blocks": 1, "norm": "none"}}, 1
    )
    srgan = make({"name": "srgan", "args": {"features": 8, "blocks": 1}})
    return save_model(meta, folder / "tiny.safetensors"), save_model(
        srgan, folder / "x2.safetensors"
    )


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_parse_scales_is_exact():
    scales = evaluation.parse_scales("1.1:4.0:0.1")
    assert len(scales) == 30 and scales[0] == Fraction(11, 10) and scales[-1] == 4
    assert evaluation.parse_scales("3,2,2.5:3:0.5") == [2, Fraction(5, 2), 3]
    assert [evaluation.scale_label(s) for s in scales[:2]] == ["1.1", "1.2"]
    assert evaluation.scale_label(Fraction(7, 3)) == "7/3"
    for bad in ("", "2:1:0.1", "1:2", "x", "0.5"):
        with pytest.raises(ValueError):
            evaluation.parse_scales(bad)


def test_exact_sizes_are_crops_never_resizes():
    top, left, h, w = evaluation.exact_hr_window((149, 179), Fraction(23, 10))
    assert (h, w) == (138, 161) and (top, left) == (5, 9)
    assert evaluation.exact_lr_shape((h, w), Fraction(23, 10)) == (60, 70)
    assert evaluation.exact_hr_window((149, 179), Fraction(2)) == (0, 0, 148, 178)
    with pytest.raises(ValueError, match="too small"):
        evaluation.exact_hr_window((20, 40), Fraction(37, 10))
    # a window of the original slice, moved into the exact crop's coordinates
    assert evaluation.shift_window((0, 170, 64, 64), (5, 9), (138, 161)) == (0, 97, 64, 64)


def test_evaluate_writes_tables_and_figures(tmp_path, models, capsys):
    meta, srgan = models
    out = tmp_path / "run"
    argv = ["evaluate", "--models", str(meta), str(srgan), "--labels", "Meta", "SRGAN"]
    argv += ["--data", "mni152_val", "--max-images", "2", "--scales", "1.5,2.5"]
    argv += ["--crop-size", "64", "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "adding that scale" in err  # SRGAN x2 needs scale 2, which was not asked for
    for name in ("table.csv", "table.md", "per_image.csv", "plot.png", "fig7.png", "fig8.png"):
        assert (out / name).stat().st_size > 0, name
    table = _read_csv(out / "table.csv")
    keys = {(r["method"], r["scale"], r["region"]) for r in table}
    for scale in ("1.5", "2", "2.5"):
        for region in evaluation.REGIONS:
            assert ("Bicubic", scale, region) in keys and ("Meta", scale, region) in keys
    assert {r["scale"] for r in table if r["method"] == "SRGAN"} == {"2"}
    meta_row = next(r for r in table if r["method"] == "Meta")
    assert int(meta_row["params"]) > 0 and int(meta_row["n"]) == 2
    text = (out / "table.md").read_text()
    assert "data_range = 1.0" in text and "Table 1 layout at x2" in text
    assert "antialiased bicubic" in text and "Worst slice" in text
    assert "Per source" not in text  # one volume only

    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<table>" in page
    assert "fig8.png" in (out / "report.md").read_text()


def test_bicubic_rows_equal_an_independent_scikit_image_computation(tmp_path):
    out = tmp_path / "run"
    rows = _run_bicubic_only(out)
    images = evaluation.load_images("colin27_val", max_images=2)

    for im in images:
        volume_slice = im.array.astype(np.float32)
        for scale in (Fraction(23, 10), Fraction(3)):
            p = scale.numerator
            h, w = volume_slice.shape
            hh, ww = h - h % p, w - w % p
            top, left = (h - hh) // 2, (w - ww) // 2
            hr = torch.from_numpy(volume_slice[top : top + hh, left : left + ww])[None, None]
            lr_size = (hh * scale.denominator // p, ww * scale.denominator // p)
            lr = F.interpolate(hr, lr_size, mode="bicubic", antialias=True).clamp(0, 1)
            up = F.interpolate(lr, (hh, ww), mode="bicubic").clamp(0, 1)
            hr_np, up_np = hr[0, 0].double().numpy(), up[0, 0].double().numpy()
            t, c, ch, cw = evaluation.information_window(volume_slice, (48, 48))
            t = min(max(t - top, 0), hh - ch)
            c = min(max(c - left, 0), ww - cw)
            crop = (slice(t, t + ch), slice(c, c + cw))
            mask = hr_np > 0
            _, full = skm.structural_similarity(
                up_np, hr_np, data_range=1.0, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, full=True,
            )  # fmt: skip
            expected = {
                "crop": (
                    skm.peak_signal_noise_ratio(hr_np[crop], up_np[crop], data_range=1.0),
                    _sk_ssim(up_np[crop], hr_np[crop]),
                ),
                "slice": (
                    skm.peak_signal_noise_ratio(hr_np, up_np, data_range=1.0),
                    _sk_ssim(up_np, hr_np),
                ),
                "brain": (
                    10 * math.log10(1 / np.mean((up_np - hr_np)[mask] ** 2)),
                    full[5:-5, 5:-5][mask[5:-5, 5:-5]].mean(),
                ),
            }
            label = evaluation.scale_label(scale)
            for region, (psnr, ssim) in expected.items():
                row = rows[(im.name, label, region)]
                assert float(row["psnr"]) == pytest.approx(psnr, abs=1e-6), (region, label)
                assert float(row["ssim"]) == pytest.approx(ssim, abs=1e-6), (region, label)


def _sk_ssim(a, b):
    return skm.structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )


def _run_bicubic_only(out):
    images = evaluation.load_images("colin27_val", max_images=2)
    methods = [evaluation.bicubic_method()]
    scales = [Fraction(23, 10), Fraction(3)]
    rows = evaluation.evaluate(images, methods, scales, crop_size=(48, 48), progress=False)
    info = {
        "data": "colin27_val",
        "n_images": 2,
        "sources": ["colin27_val"],
        "degradation_text": "bicubic",
        "crop_size": [48, 48],
        "mask_threshold": 0.0,
    }
    evaluation.write_tables(out, rows, methods, info)
    return {(r["image"], r["scale"], r["region"]): r for r in _read_csv(out / "per_image.csv")}


@pytest.mark.parametrize("degradation", ["bicubic", "kspace"])
def test_results_do_not_depend_on_batch_size_or_threads(models, degradation):
    meta, _ = models
    images = evaluation.load_images("mni152_val", max_images=3)
    method = evaluation.load_method(str(meta))
    scales = [Fraction(17, 10), Fraction(3)]

    def run(batch_size, threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            rows = evaluation.evaluate(
                images,
                [evaluation.bicubic_method(), method],
                scales,
                degradation=degradation,
                crop_size=(64, 64),
                batch_size=batch_size,
                progress=False,
            )
        finally:
            torch.set_num_threads(before)
        return np.array([[r["psnr"], r["ssim"]] for r in rows])

    reference = run(1, 1)
    assert np.isfinite(reference).all()
    model_rows = reference.reshape(len(scales), 2, len(images), 3, 2)
    assert not np.allclose(model_rows[:, 0], model_rows[:, 1])  # the model is not bicubic
    np.testing.assert_allclose(run(3, 2), reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(run(2, 1), reference, rtol=0, atol=1e-6)


def test_load_images_from_files_folders_and_brats(tmp_path):
    rng = np.random.default_rng(0)
    vol = np.zeros((40, 36, 5), np.float32)
    vol[5:35, 6:30, 1:4] = rng.random((30, 24, 3)) * 800 + 100  # slices 0 and 4 are empty
    brats = tmp_path / "brats"
    for subject in ("BraTS2021_00000", "BraTS2021_00001"):
        (brats / subject).mkdir(parents=True)
        for mod in ("t1ce", "flair"):
            nib.save(nib.Nifti1Image(vol, np.eye(4)), brats / subject / f"{subject}_{mod}.nii.gz")
    images = evaluation.load_images(str(brats))
    assert [im.name for im in images][:3] == [
        "BraTS2021_00000_t1ce:z001",
        "BraTS2021_00000_t1ce:z002",
        "BraTS2021_00000_t1ce:z003",
    ]
    assert len(images) == 6 and all(im.array.min() >= 0 and im.array.max() <= 1 for im in images)

    folder = tmp_path / "pictures"
    folder.mkdir()
    from PIL import Image

    rgb = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "photo.png")
    np.save(folder / "slice.npy", vol[..., 2])
    images = evaluation.load_images(str(folder))
    assert [im.name for im in images] == ["photo", "slice"]
    assert images[0].array.shape == (32, 40)  # RGB compared on its luminance
    three = tmp_path / "three.nii.gz"  # a 3-slice volume is not an RGB picture
    nib.save(nib.Nifti1Image(vol[..., 1:4], np.eye(4)), three)
    assert [im.name for im in evaluation.load_images(str(three))][-1] == "three:z002"

    assert len(evaluation.load_images("samples", max_images=5)) == 5
    names = {im.name.split(":")[0] for im in evaluation.load_images("samples")}
    assert names == {"mni152_val", "colin27_val"}
    with pytest.raises(FileNotFoundError, match="neither"):
        evaluation.load_images(str(tmp_path / "missing"))


def test_cli_errors_are_clear(tmp_path, models, capsys):
    meta, _ = models
    base = ["evaluate", "--data", "mni152_val", "--output", str(tmp_path / "o"), "--no-progress"]
    assert main([*base, "--models", str(meta), "--labels", "a", "b"]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main([*base, "--models", str(tmp_path / "nope.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main([*base, "--models", str(meta), "--scales", "1:2"]) == 2
    if not torch.cuda.is_available():
        assert main([*base, "--models", str(meta), "--device", "cuda"]) == 2
        assert "CUDA" in capsys.readouterr().err


def test_model_labels(models, tmp_path):
    meta, _ = models
    run_file = tmp_path / "run7" / "checkpoints" / "best.safetensors"
    run_file.parent.mkdir(parents=True)
    run_file.write_bytes(meta.read_bytes())
    methods = [evaluation.bicubic_method()]
    methods += [evaluation.load_method(str(p)) for p in (meta, run_file, meta)]
    evaluation.unique_labels(methods)
    assert [m.label for m in methods] == ["Bicubic", "tiny", "run7/best", "tiny (2)"]


def test_shipped_model_is_labelled_and_flagged_when_untrained(recwarn):
    from metasrgan.inference import shipped_model_path

    method = evaluation.load_method("shipped")
    assert method.label.startswith("Meta-SRGAN (shipped)") and method.params > 500_000
    assert method.fixed_scale is None
    if shipped_model_path() is None:
        assert "untrained" in method.label and method.notes
    else:
        assert not method.notes


def test_adapted_models_fit_each_sources_low_resolution_slices_alone(monkeypatch):
    """``--adapt``: one adaptation per source and scale, on that source's LR inputs only
    (never its HR), by the pairs of its acquisition, the given model untouched, rows
    labelled apart."""
    import metasrgan.adapt as adapt

    images = evaluation.load_images("samples", max_images=4)  # two scans, two slices each
    method = evaluation.load_method("shipped", label="net")
    assert method.adapt == "auto"  # as upscale's default
    method.adapt = 0
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    seen, real = [], adapt.adapt_model

    def recording(model, slices, tasks, options, progress=False):
        seen.append((np.array(slices), tasks, options.steps))
        return real(model, slices, tasks, options, progress)

    monkeypatch.setattr(adapt, "adapt_model", recording)
    scales = [Fraction(2), Fraction(5, 2)]
    rows = evaluation.evaluate(
        images, [method, evaluation.adapted_method(method, 3)], scales, degradation="kspace",
        crop_size=(64, 64), progress=False,
    )  # fmt: skip
    assert len(seen) == 2 * len(scales)
    for (slices, tasks, steps), scale in zip(seen, scales * 2, strict=True):  # source, scale
        assert steps == 3 and len(slices) == 2
        assert [t.degradation for t in tasks] == ["kspace"]
        assert (tasks[0].target or tasks[0].scale) == (scale, scale)  # pairs at x2 at most
        assert max(tasks[0].scale) == min(scale, 2)
    for (slices, _, _), im in zip(seen[::2], images[::2], strict=True):
        batch = evaluation.prepare(torch.from_numpy(im.array)[None, None], Fraction(2), "kspace")
        assert slices.shape[1:] == tuple(batch.lr.shape[-2:])  # LR, not the HR slice
        assert slices.shape[1:] != im.array.shape
    assert {r["method"] for r in rows} == {"net", "net +adapt 3"}
    psnr = {(r["image"], r["scale"], r["region"], r["method"]): r["psnr"] for r in rows}
    assert any(v != psnr[(*k[:3], "net")] for k, v in psnr.items() if k[3] != "net")
    for k, v in method.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_thick_slices_are_not_adapted_to_in_a_2d_benchmark(monkeypatch):
    """``upscale`` makes thick-slice pairs from a volume's fine slices; a benchmark slice has
    one fine axis, so its ``+adapt`` rows are the model as it is."""
    import metasrgan.adapt as adapt

    images = evaluation.load_images("samples", max_images=2)
    method = evaluation.adapted_method(evaluation.load_method("shipped", label="net"), 3)

    def refuse(*args, **kwargs):
        raise AssertionError("adapted to thick slices")

    monkeypatch.setattr(adapt, "adapt_model", refuse)
    rows = evaluation.evaluate(images, [method], [Fraction(3)], degradation="thick",
                               crop_size=(64, 64), progress=False)  # fmt: skip
    assert rows and {r["method"] for r in rows} == {"net +adapt 3"}


def test_evaluate_cli_adapts_on_request(tmp_path, models, capsys):
    meta, _ = models
    out = tmp_path / "o"
    base = ["evaluate", "--models", str(meta), "--labels", "tiny", "--data", "mni152_val",
            "--max-images", "2", "--scales", "2", "--no-figures", "--no-progress",
            "-o", str(out)]  # fmt: skip
    assert main([*base, "--adapt", "-1"]) == 2
    assert "--adapt" in capsys.readouterr().err
    assert main([*base, "--adapt", "auto", "0", "2", "--degradation", "kspace"]) == 0
    methods = {r["method"] for r in _read_csv(out / "table.csv")}
    assert {"tiny", "tiny +adapt 0", "tiny +adapt 2"} <= methods  # auto: upscale's default
    assert json.loads((out / "evaluation.json").read_text())["adapt"] == ["auto", 0, 2]


def test_a_wrong_figure_image_is_refused_before_the_evaluation(tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("evaluated before checking --figure-image")

    monkeypatch.setattr(evaluation, "evaluate", never)
    code = main(["evaluate", "--data", "mni152_val", "--max-images", "2", "--scales", "2",
                 "--figure-image", "mni152_val:z006", "--no-progress",
                 "-o", str(tmp_path / "o")])  # fmt: skip
    assert code == 2
    assert "--figure-image 'mni152_val:z006'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_evaluate_cli_ensembles_on_request(tmp_path, models):
    meta, _ = models
    out = tmp_path / "o"
    assert main(["evaluate", "--models", str(meta), "--labels", "tiny", "--data", "mni152_val",
                 "--max-images", "2", "--scales", "2", "--degradation", "kspace", "--ensemble",
                 "--no-figures", "--no-progress", "-o", str(out)]) == 0  # fmt: skip
    rows = _read_csv(out / "table.csv")
    assert {"tiny", "tiny +ensemble"} <= {r["method"] for r in rows}
    assert not any(r["method"].startswith("Bicubic +") for r in rows)  # networks only
    assert '"ensemble": true' in (out / "evaluation.json").read_text()


def test_a_method_and_its_self_ensemble_share_one_adaptation(monkeypatch):
    """``--adapt N --ensemble``: the ``+adapt N +ensemble`` rows ensemble the very network
    the ``+adapt N`` rows used, adapted once per source and scale."""
    import metasrgan.adapt as adapt

    images = evaluation.load_images("samples", max_images=2)  # one scan, two slices
    method = evaluation.load_method("shipped", label="net")
    method.adapt = 0
    adapted = evaluation.adapted_method(method, 2)
    calls, real = [], adapt.adapt_model

    def counting(model, slices, tasks, options, progress=False):
        calls.append(model)
        return real(model, slices, tasks, options, progress)

    monkeypatch.setattr(adapt, "adapt_model", counting)
    rows = evaluation.evaluate(
        images, [method, adapted, evaluation.ensembled_method(adapted)], [Fraction(2)],
        degradation="kspace", crop_size=(64, 64), progress=False,
    )  # fmt: skip
    assert len(calls) == len({im.name.split(":")[0] for im in images})
    labels = {r["method"] for r in rows}
    assert labels == {"net", "net +adapt 2", "net +adapt 2 +ensemble"}
