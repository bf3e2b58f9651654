"""``metasrgan demo``: the shipped model on a bundled real slice it never trained on.

Takes one held-out Colin27 slice, makes its low-resolution versions (antialiased bicubic),
upscales them at several scales with the shipped model and with bicubic, and writes a
Figure-8-style panel and a PSNR/SSIM table (the evaluation protocol of
:mod:`metasrgan.evaluation`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_DATA = "colin27_val"
DEMO_SCALES = "1.5,2,2.5,3,3.7,4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", default="demo-output", help="folder for the results")
    parser.add_argument("--model", default="shipped", help="model file (default: shipped)")
    parser.add_argument("--scales", default=DEMO_SCALES, help=f"scales (default {DEMO_SCALES})")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    from metasrgan.commands import evaluate

    out = Path(args.output)
    print(f"metasrgan demo: held-out slices of {DEMO_DATA} (real MRI never trained on)")
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    eval_args = parser.parse_args(
        ["--models", args.model, "--labels", "Meta-SRGAN", "--data", DEMO_DATA,
         "--scales", args.scales, "--figure-scales", args.scales, "-o", str(out),
         "--max-images", "3", "--batch-size", "4", "--device", args.device]
    )  # fmt: skip
    eval_args.debug = args.debug
    code = evaluate.run(eval_args)
    if code == 0:
        print(
            f"\nfigure (paper Fig. 8 style): {out / 'fig8.png'}\n"
            f"figure (paper Fig. 7 style): {out / 'fig7.png'}\n"
            f"table: {out / 'table.md'} and {out / 'table.csv'}",
            file=sys.stderr,
        )
    return code
