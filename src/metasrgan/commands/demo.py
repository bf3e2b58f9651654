"""``metasrgan demo``: the shipped model on a bundled real slice it never trained on.

Takes held-out Colin27 slices, makes their low-resolution versions (antialiased bicubic),
upscales them at several scales with the shipped model and with bicubic, and writes a
Figure-8-style panel, a Figure-7-style comparison at x2 and a PSNR/SSIM table, with the
evaluation protocol of :mod:`metasrgan.evaluation` (called directly, as a library).
"""

from __future__ import annotations

import argparse
import logging
import sys
from fractions import Fraction
from pathlib import Path

log = logging.getLogger("metasrgan.demo")  # -v/-q (metasrgan.logs)

DEMO_DATA = "colin27_val"
DEMO_SCALES = "1.5,2,2.5,3,3.7,4"
DEMO_SLICES = 3
CROP = (128, 128)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", default="demo-output", help="folder for the results")
    parser.add_argument("--model", default="shipped", help="model file (default: shipped)")
    parser.add_argument("--scales", default=DEMO_SCALES, help=f"scales (default {DEMO_SCALES})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    from metasrgan import __version__, evaluation, figures
    from metasrgan.degradations import make_chain
    from metasrgan.inference import pick_device

    scales = evaluation.parse_scales(args.scales)  # checked before any work
    device = pick_device(args.device)
    out = Path(args.output)
    log.info("metasrgan demo: held-out slices of %s (real MRI never trained on)", DEMO_DATA)
    model = evaluation.load_method(args.model, device, "Meta-SRGAN")
    methods = [evaluation.bicubic_method(), model]
    images = evaluation.load_images(DEMO_DATA, DEMO_SLICES)
    rows = evaluation.evaluate(images, methods, scales, "bicubic", CROP, batch_size=4,
                               progress=not args.no_progress)  # fmt: skip
    info = {
        "data": DEMO_DATA,
        "n_images": len(images),
        "sources": sorted({im.name.split(":")[0] for im in images}),
        "degradation": "bicubic",
        "degradation_text": make_chain("bicubic").text,
        "crop_size": list(CROP),
        "mask_threshold": 0.0,
        "data_range": evaluation.DATA_RANGE,
        "scales": [evaluation.scale_label(s) for s in scales],
        "metasrgan": __version__,
    }
    evaluation.write_tables(out, rows, methods, info)
    image = figures.pick_figure_image(images)
    figures.figure8(image, methods, scales, out / "fig8.png", crop_size=CROP)
    figures.figure7(image, methods, out / "fig7.png", Fraction(2), crop_size=CROP)
    print((out / "table.md").read_text())
    print(
        f"\nfigure (paper Fig. 8 style): {out / 'fig8.png'}\n"
        f"figure (paper Fig. 7 style): {out / 'fig7.png'}\n"
        f"table: {out / 'table.md'} and {out / 'table.csv'}",
        file=sys.stderr,
    )
    return 0
