"""``metasrgan evaluate``: PSNR/SSIM of models and bicubic over scales, tables and figures.

Writes into ``--output``: ``table.csv`` and ``table.md`` (mean and std per method and scale,
the shape of the paper's Table 1), ``per_image.csv``, ``plot.png``, ``fig7.png``,
``fig8.png`` and ``evaluation.json`` (the settings).  The protocol is described in
:mod:`metasrgan.evaluation`.
"""

from __future__ import annotations

import argparse


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"crop size is N or HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 11:
        raise argparse.ArgumentTypeError(f"crop size is N or HxW with sides >= 11, got {text!r}")
    return values  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        nargs="+",
        default=["shipped"],
        metavar="MODEL",
        help="model files (.safetensors), or 'shipped' for the model in the package "
        "(default); bicubic is always included",
    )
    parser.add_argument("--labels", nargs="+", help="names for the models, in the same order")
    parser.add_argument(
        "--data",
        default="samples",
        help="'samples' (validation slabs held out of training, default), a bundled sample "
        "(mni152_val, colin27_val, inia19_macaque), an image/volume file, a folder, or a "
        "BraTS root",
    )
    parser.add_argument(
        "--scales",
        default="1.1:4.0:0.1",
        help="START:STOP:STEP (inclusive) and/or a comma list (default 1.1:4.0:0.1)",
    )
    parser.add_argument("--output", "-o", required=True, help="folder for tables and figures")
    parser.add_argument("--degradation", choices=("bicubic", "kspace"), default="bicubic")
    parser.add_argument(
        "--crop-size",
        type=_size,
        default=(128, 128),
        help="maximal-information crop for the metrics, N or HxW (default 128)",
    )
    parser.add_argument(
        "--mask-threshold", type=float, default=0.0, help="brain mask: HR > this (default 0)"
    )
    parser.add_argument("--max-images", type=int, help="evaluate this many slices, evenly spaced")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--figure-image", help="slice for Figures 7 and 8: index or name")
    parser.add_argument(
        "--figure-scales", help="scales of Figure 8 (default: 1.5, 2, ..., 4 where swept)"
    )
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from fractions import Fraction
    from pathlib import Path

    import torch

    from metasrgan import __version__, evaluation
    from metasrgan.inference import pick_device

    if args.threads:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.labels and len(args.labels) != len(args.models):
        raise ValueError(f"{len(args.labels)} --labels for {len(args.models)} --models")
    device = pick_device(args.device)
    scales = evaluation.parse_scales(args.scales)

    methods = [evaluation.bicubic_method()]
    for k, source in enumerate(args.models):
        label = args.labels[k] if args.labels else None
        methods.append(evaluation.load_method(source, device, label))
    evaluation.unique_labels(methods)
    for m in methods:
        if m.fixed_scale is not None and m.fixed_scale not in scales:
            print(
                f"note: {m.label} only upscales by x{evaluation.scale_label(m.fixed_scale)}; "
                "adding that scale to the sweep",
                file=sys.stderr,
            )
            scales = sorted([*scales, m.fixed_scale])

    images = evaluation.load_images(args.data, args.max_images)
    sources = sorted({im.name.split(":")[0] for im in images})
    print(
        f"evaluating {len(methods)} methods on {len(images)} slices from {', '.join(sources)} "
        f"at {len(scales)} scales ({args.degradation} LR)",
        file=sys.stderr,
    )
    rows = evaluation.evaluate(
        images,
        methods,
        scales,
        degradation=args.degradation,
        crop_size=args.crop_size,
        batch_size=args.batch_size,
        mask_threshold=args.mask_threshold,
        progress=not args.no_progress,
    )
    out = Path(args.output)
    info = {
        "data": args.data,
        "n_images": len(images),
        "sources": sources,
        "degradation": args.degradation,
        "degradation_text": evaluation.degradation_text(args.degradation),
        "crop_size": list(args.crop_size),
        "mask_threshold": args.mask_threshold,
        "data_range": evaluation.DATA_RANGE,
        "scales": [evaluation.scale_label(s) for s in scales],
        "models": [
            {"label": m.label, "source": m.source, "parameters": m.params, "notes": m.notes}
            for m in methods
        ],
        "metasrgan": __version__,
    }
    summary = evaluation.write_tables(out, rows, methods, info)
    written = ["table.csv", "table.md", "per_image.csv"]

    if not args.no_figures:
        from metasrgan import figures

        figures.plot_sweep(summary, methods, out / "plot.png")
        written.append("plot.png")
        image = figures.pick_figure_image(images, args.figure_image)
        info["figure_image"] = image.name
        common = dict(
            degradation=args.degradation,
            crop_size=args.crop_size,
            mask_threshold=args.mask_threshold,
        )
        if any(m.runs_at(Fraction(2)) for m in methods):
            figures.figure7(image, methods, out / "fig7.png", Fraction(2), **common)
            written.append("fig7.png")
        fig8_scales = (
            evaluation.parse_scales(args.figure_scales)
            if args.figure_scales
            else figures.pick_figure_scales(scales)
        )
        info["figure8_scales"] = [evaluation.scale_label(s) for s in fig8_scales]
        figures.figure8(image, methods, fig8_scales, out / "fig8.png", **common)
        written.append("fig8.png")

    (out / "evaluation.json").write_text(json.dumps(info, indent=2) + "\n")
    written.append("evaluation.json")
    print((out / "table.md").read_text())
    print(f"wrote {', '.join(written)} to {out}", file=sys.stderr)
    return 0
