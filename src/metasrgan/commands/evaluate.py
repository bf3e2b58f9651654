"""``metasrgan evaluate``: PSNR/SSIM of models and classical baselines over degradations and
scales, tables and figures.

Writes into ``--output``: ``table.csv`` and ``table.md`` (mean and std per degradation,
method and scale, the gain over the best classical baseline, the shape of the paper's
Table 1), ``gains.csv``, ``per_image.csv``, ``plot.png`` (one per degradation after the
first: ``plot-<name>.png``), ``fig7.png``, ``fig8.png`` and ``evaluation.json`` (the
settings).  The protocol is described in :mod:`metasrgan.evaluation`.

Example::

    metasrgan evaluate --models shipped --data inia19_macaque --degradation all -o eval/
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("metasrgan.evaluate")  # -v/-q (metasrgan.logs)


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
        "(default); bicubic, Lanczos-3, cubic B-spline and zero-filled sinc are always included",
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
    parser.add_argument(
        "--degradation",
        nargs="+",
        default=["bicubic"],
        metavar="DEG",
        help="how LR is made: presets (bicubic, bicubic-noise, kspace, kspace-noise, "
        "kspace-hamming, thick, thick-noise), 'all' (the five of the acquisition benchmark), "
        "or a YAML file / inline YAML with a chain {acquisition, steps} or a {mixture: [...]} "
        "(each of its chains is evaluated); default bicubic",
    )
    parser.add_argument(
        "--through-plane-scales",
        help="scales of through-plane (thick-slice) degradations, used as (s, 1) "
        "(default: --scales)",
    )
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
    parser.add_argument(
        "--adapt",
        nargs="+",
        default=["auto"],
        metavar="STEPS",
        help="evaluate each model adapted to each source as 'upscale --adapt STEPS' does "
        "(fitted on the source's LR slices alone, once per scale), one row per value: auto "
        "(the default, as upscale's), 0 (the model as it is) or a number of updates; thick "
        "slices are adapted to on volumes only (benchmarks/bench_through_plane.py --adapt)",
    )
    parser.add_argument(
        "--ensemble", action="store_true",
        help="also evaluate each model (adapted ones included) as a self-ensemble, as "
        "'upscale --ensemble' does",
    )  # fmt: skip
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
    from fractions import Fraction
    from pathlib import Path

    import torch

    from metasrgan import __version__, evaluation
    from metasrgan.api.options import check_adapt
    from metasrgan.inference import pick_device

    if args.threads:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.labels and len(args.labels) != len(args.models):
        raise ValueError(f"{len(args.labels)} --labels for {len(args.models)} --models")
    device = pick_device(args.device)
    scales = evaluation.parse_scales(args.scales)

    from metasrgan.degradations import ACQUISITIONS, PRESETS

    degradations = parse_degradations(args.degradation)
    through = (
        evaluation.parse_scales(args.through_plane_scales) if args.through_plane_scales else scales
    )
    methods = evaluation.classical_methods()
    for k, source in enumerate(args.models):
        label = args.labels[k] if args.labels else None
        methods.append(evaluation.load_method(source, device, label))
    evaluation.unique_labels(methods)
    adapts = list(dict.fromkeys(check_adapt(a) for a in args.adapt))
    methods = [variant for m in methods
               for variant in ([m] if m.classical else
                               [evaluation.adapted_method(m, a) for a in adapts])]  # fmt: skip
    if args.ensemble:
        methods += [evaluation.ensembled_method(m) for m in methods if m.model]
    for m in methods:
        if m.fixed_scale is not None and m.fixed_scale not in scales:
            log.info(
                "note: %s only upscales by x%s; adding that scale to the sweep",
                m.label,
                evaluation.scale_label(m.fixed_scale),
            )
            scales = sorted([*scales, m.fixed_scale])

    images = evaluation.load_images(args.data, args.max_images)
    figure_image = None
    if not args.no_figures:  # a wrong --figure-image is refused before the evaluation
        from metasrgan import figures

        figure_image = figures.pick_figure_image(images, args.figure_image)
    sources = sorted({im.name.split(":")[0] for im in images})
    log.info(
        "evaluating %d methods on %d slices from %s at %d scales, LR by: %s",
        len(methods), len(images), ", ".join(sources), len(scales), ", ".join(degradations),
    )  # fmt: skip
    rows = []
    for name, chain in degradations.items():
        rows += evaluation.evaluate(
            images,
            methods,
            through if ACQUISITIONS[chain.acquisition].through_plane else scales,
            degradation=chain,
            name=name,
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
        "degradation": list(degradations),
        "degradation_text": {k: c.text for k, c in degradations.items()},
        "through_plane_scales": [evaluation.scale_label(s) for s in through],
        "crop_size": list(args.crop_size),
        "mask_threshold": args.mask_threshold,
        "adapt": adapts,
        "ensemble": args.ensemble,
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

    if figure_image is not None:
        first = next(iter(degradations))
        for k, name in enumerate(degradations):
            plot = "plot.png" if k == 0 else f"plot-{name}.png"
            mine = [r for r in summary if r["degradation"] == name]
            figures.plot_sweep(mine, methods, out / plot)
            written.append(plot)
        info["figure_image"] = figure_image.name
        best = evaluation.best_classical([r for r in summary if r["degradation"] == first], methods)
        wins: dict[str, int] = {}
        for r in best.values():
            wins[r["method"]] = wins.get(r["method"], 0) + 1
        top = max(wins, key=wins.get) if wins else methods[0].label
        fig8_methods = [m for m in methods if not m.classical or m.label == top]
        common = dict(
            degradation=first if first in PRESETS else degradations[first],
            crop_size=args.crop_size,
            mask_threshold=args.mask_threshold,
        )
        if any(m.runs_at(Fraction(2)) for m in methods):
            figures.figure7(figure_image, methods, out / "fig7.png", Fraction(2), **common)
            written.append("fig7.png")
        fig8_scales = (
            evaluation.parse_scales(args.figure_scales)
            if args.figure_scales
            else figures.pick_figure_scales(scales)
        )
        info["figure8_scales"] = [evaluation.scale_label(s) for s in fig8_scales]
        figures.figure8(figure_image, fig8_methods, fig8_scales, out / "fig8.png", **common)
        written.append("fig8.png")

    (out / "evaluation.json").write_text(json.dumps(info, indent=2) + "\n")
    written.append("evaluation.json")
    print((out / "table.md").read_text())
    log.info("wrote %s to %s", ", ".join(written), out)
    return 0


BENCHMARK_DEGRADATIONS = ("bicubic", "kspace", "kspace-noise", "thick", "bicubic-noise")
"""``--degradation all``: how real low-resolution MRI is made, plus the paper's protocol."""


def parse_degradations(values: list[str]) -> dict:
    """``{name: Chain}`` from preset names, ``all``, YAML files or inline YAML specs."""
    from pathlib import Path

    import yaml

    from metasrgan import yamlio
    from metasrgan.degradations import PRESETS, make_chain, make_plan

    chains: dict = {}
    for value in values:
        if value == "all":
            chains.update({n: make_chain(n) for n in BENCHMARK_DEGRADATIONS})
            continue
        if value in PRESETS:
            chains[value] = make_chain(value)
            continue
        path = Path(value)
        try:
            spec = yamlio.load(path.read_text() if path.is_file() else value)
        except yaml.YAMLError as err:
            raise ValueError(
                f"--degradation {value!r}: not a preset, file or YAML ({err})"
            ) from None
        if not isinstance(spec, dict):
            raise ValueError(
                f"--degradation {value!r} is not a preset ({', '.join(PRESETS)}), 'all', "
                "a YAML file or an inline YAML mapping"
            )
        mixture = spec if "mixture" in spec else {"mixture": [spec]}
        for option in make_plan(mixture, (2.0,)).options:  # weights and scales: training's
            chain = option.chain
            chains[chain.preset or f"{chain.acquisition}-{len(chains) + 1}"] = chain
    return chains
