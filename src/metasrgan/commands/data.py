"""``metasrgan data``: prepare 2D slices with a manifest, pixel statistics, fetch MNI152.

SRC is a folder (BraTS, a DIV2K-style image folder, your own NIfTI/DICOM scans, or a
prepared folder: detected from its contents), an offline source name (``mni152``,
``colin27``, ``colin27-bet``; several with commas), ``natural`` (scikit-image's images) or
``samples`` (the bundled slabs).  ``--kind`` overrides the detection.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("metasrgan.data")  # -v/-q (metasrgan.logs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    prepare = sub.add_parser("prepare", help="write 2D slices (.npy or PNG) and a manifest")
    _source_arguments(prepare)
    prepare.add_argument("out", type=Path, help="output folder")
    prepare.add_argument(
        "--format",
        choices=("npy", "png"),
        default="npy",
        help="npy: float32 in [0, 1] (default); png: 16-bit",
    )
    prepare.add_argument(
        "--split",
        choices=("train", "val", "all"),
        action="append",
        help="splits to write (default: train and val)",
    )
    prepare.add_argument(
        "--force",
        action="store_true",
        help="replace a folder that already holds a prepared dataset",
    )

    stats = sub.add_parser(
        "stats",
        help="mean/std of the pixels after the crop (paper: "
        "0.370/0.117 on BraTS t1ce training slices)",
    )
    _source_arguments(stats)
    stats.add_argument("--split", choices=("train", "val", "all"), default="train")
    stats.add_argument("--json", action="store_true", help="print the numbers as JSON")

    fetch = sub.add_parser("fetch", help="extract the MNI152 template from the nilearn wheel")
    fetch.add_argument(
        "--dest",
        type=Path,
        help="folder (default: $METASRGAN_DATA, else $XDG_CACHE_HOME/metasrgan or "
        "~/.cache/metasrgan: where the loaders look)",
    )
    fetch.add_argument("--wheel", type=Path, help="use this nilearn wheel, no download")
    for p in (prepare, stats, fetch):
        p.add_argument("--debug", action="store_true", help="show tracebacks")


def _source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="folder, offline source name(s), 'natural' or 'samples'")
    p.add_argument(
        "--kind",
        choices=("brats", "volumes", "images", "natural", "offline", "samples", "prepared"),
        help="override the detection",
    )
    p.add_argument("--modality", default="t1ce", help="BraTS modality (default t1ce)")
    p.add_argument(
        "--crop",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="maximal-information crop of this size",
    )
    p.add_argument("--axes", type=int, nargs="+", help="slicing axes (offline / volumes)")
    p.add_argument("--normalize", choices=("percentile", "range", "minmax", "none"))
    p.add_argument(
        "--min-foreground",
        type=float,
        help="skip slices with a smaller non-zero fraction (default 0.05)",
    )
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="a bad file stops (default) or is reported and left out",
    )


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # summaries are printed
    if args.action == "prepare":
        return prepare(args)
    if args.action == "stats":
        return stats(args)
    return fetch(args)


# ---------------------------------------------------------------------------- source spec


def source_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The data source spec (as in training configs) that SRC and the options describe."""
    from metasrgan.data import offline

    src = str(args.src)
    kind = args.kind
    names = [n for n in src.split(",") if n]
    if kind is None:
        if src in ("natural", "samples"):
            kind = src
        elif names and all(n in offline.SOURCES for n in names):
            kind = "offline"
        elif Path(src).is_dir():
            kind = detect_kind(Path(src), args.modality)
        else:
            raise FileNotFoundError(
                f"{src}: not a folder, and not one of natural, samples, "
                f"{', '.join(offline.SOURCES)}"
            )
    spec: dict[str, Any] = {"kind": kind}
    if kind in ("brats", "volumes", "images", "prepared"):
        spec["root"] = src
    if kind == "brats":
        spec["modality"] = args.modality
    if kind == "offline":
        spec["names"] = names
    if kind == "samples" and src != "samples":
        spec["names"] = names
    if args.axes and kind in ("offline", "volumes"):
        spec["axes"] = list(args.axes)
    if args.crop:
        spec["crop"] = list(args.crop)
    for key in ("normalize", "min_foreground"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if kind not in ("offline", "samples", "prepared"):
        spec["val_fraction"] = args.val_fraction
        spec["seed"] = args.seed
    if kind not in ("offline", "samples", "natural"):
        spec["on_error"] = args.on_error
    return spec


def detect_kind(folder: Path, modality: str = "t1ce") -> str:
    """``prepared`` (a manifest), ``brats`` (modality files), ``volumes`` or ``images``."""
    from metasrgan.data.datasets import brats_subjects
    from metasrgan.data.io import PLAIN_SUFFIXES, find_images, suffix_of

    if (folder / "manifest.json").is_file():
        return "prepared"
    if brats_subjects(folder, modality):
        return "brats"
    found = find_images(folder)
    if any(p.is_dir() or suffix_of(p) in (".nii", ".nii.gz", ".dcm") for p in found):
        return "volumes"
    if any(suffix_of(p) in PLAIN_SUFFIXES for p in found):
        return "images"
    raise FileNotFoundError(f"{folder}: no BraTS volumes, scans or images found")


# ---------------------------------------------------------------------------- prepare


def check_prepare_output(out: Path, src: str, force: bool) -> bool:
    """Refuse an output that is a file, a folder of other things, or overlaps the source;
    True when an existing prepared dataset is to be replaced (``--force``)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder; data prepare writes a folder")
    source = Path(src)
    if source.is_dir():
        a, b = out.resolve(), source.resolve()
        if a == b or b in a.parents or a in b.parents:
            raise ValueError(
                f"{out}: the output folder overlaps the source {src}; write it elsewhere "
                "(a rerun would read its own output, or replacing it would delete the source)"
            )
    if not out.is_dir():
        return False
    if (out / "manifest.json").exists():
        if not force:
            raise ValueError(f"{out} already holds a prepared dataset; pass --force to replace it")
        return True
    if any(out.iterdir()):
        raise ValueError(
            f"{out}: the folder holds other files (no manifest.json); choose a new or empty folder"
        )
    return True


def prepare(args: argparse.Namespace) -> int:
    """Write the slices into a temporary folder beside OUT and rename it at the end: a
    failure, ``--on-error skip`` run or interruption never leaves a partial dataset."""
    from metasrgan.atomic import atomic_folder
    from metasrgan.data.io import ImageReadError

    out: Path = args.out
    replace = check_prepare_output(out, str(args.src), args.force)
    spec = source_spec(args)
    try:
        with atomic_folder(out, replace=replace) as tmp:
            count, manifest = _write_prepared(tmp, spec, args)
    except ImageReadError as err:
        print(f"metasrgan data prepare: error: {err}; nothing was written", file=sys.stderr)
        return 1
    print(f"wrote {count} slices and {out / manifest.name}")
    return 0


def _write_prepared(out: Path, spec: dict[str, Any], args: argparse.Namespace):
    import numpy as np
    from tqdm import tqdm

    from metasrgan.data.datasets import load_dataset
    from metasrgan.data.io import MRImage, write_image
    from metasrgan.data.manifest import write_manifest

    splits = args.split or ["train", "val"]
    rows: list[dict[str, Any]] = []
    counts: dict[str, Any] = {}
    failed: list[dict[str, str]] = []
    for split in splits:
        result = load_dataset(spec, split)
        counts[split] = {
            "slices": len(result.images),
            "files": result.files,
            "skipped_background": result.skipped_background,
            "failed": len(result.failed),
        }
        failed += [{"file": f, "error": e, "split": split} for f, e in result.failed]
        bar = tqdm(result.images, desc=f"writing {split}", unit="slice", disable=None)
        for i, (image, record) in enumerate(zip(bar, result.records, strict=True)):
            rel = Path(split) / f"{i:06d}.{args.format}"
            pixels = image if args.format == "npy" else np.clip(image, 0.0, 1.0)
            write_image(out / rel, MRImage(pixels), bits=16)
            box = record.box or (0, 0, *image.shape)
            rows.append(
                {
                    "file": rel.as_posix(),
                    "split": split,
                    "source": record.source,
                    "axis": record.axis,
                    "index": record.index,
                    "top": box[0],
                    "left": box[1],
                    "height": int(image.shape[0]),
                    "width": int(image.shape[1]),
                }
            )
        log.info("%s", result.summary())
    meta = {"source": spec, "counts": counts, "failed": failed, "value_range": [0.0, 1.0]}
    return len(rows), write_manifest(out, meta, rows)


# ---------------------------------------------------------------------------- stats


def pixel_stats(images) -> dict[str, float]:
    """Mean and std over every pixel of every image (float64 running sums)."""
    import numpy as np

    n, total, squares = 0, 0.0, 0.0
    for image in images:
        x = np.asarray(image, dtype=np.float64)
        n += x.size
        total += float(x.sum())
        squares += float((x * x).sum())
    if n == 0:
        raise ValueError("no pixels to measure")
    mean = total / n
    return {
        "images": len(images),
        "pixels": n,
        "mean": mean,
        "std": max(squares / n - mean * mean, 0.0) ** 0.5,
    }


def stats(args: argparse.Namespace) -> int:
    from metasrgan.data.datasets import load_dataset
    from metasrgan.data.io import ImageReadError

    spec = source_spec(args)
    try:
        result = load_dataset(spec, args.split)
    except ImageReadError as err:
        print(f"metasrgan data stats: error: {err}", file=sys.stderr)
        return 1
    numbers = pixel_stats(result.images)
    if args.json:
        print(
            json.dumps(
                {
                    "source": spec,
                    "split": args.split,
                    **numbers,
                    "skipped_background": result.skipped_background,
                    "failed": len(result.failed),
                },
                indent=2,
            )
        )
        return 0
    crop = f"after a {spec['crop'][0]}x{spec['crop'][1]} crop" if "crop" in spec else "no crop"
    print(result.summary())
    print(f"{numbers['images']} images, {numbers['pixels']:,} pixels ({crop}, values in [0, 1])")
    print(
        f"mean {numbers['mean']:.4f}  std {numbers['std']:.4f}   "
        "(paper, BraTS t1ce: mean 0.370  std 0.117)"
    )
    return 0


# ---------------------------------------------------------------------------- fetch


def default_data_dir() -> Path:
    from metasrgan.data.offline import data_dir

    return data_dir()


def download_nilearn_wheel(dest: Path) -> Path:
    """``pip download nilearn --no-deps`` into ``dest``; the wheel's path."""
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "nilearn",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("nilearn-*.whl"))
    if done.returncode != 0 or not wheels:
        raise FileNotFoundError(
            "could not download the nilearn wheel (pip download nilearn --no-deps): "
            + (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        )
    return wheels[-1]


def fetch_mni152(dest: Path, wheel: Path | None = None) -> Path:
    """Extract MNI152 from ``wheel`` (downloaded into a temporary folder when None)."""
    import tempfile

    from metasrgan.data.offline import MNI152_MEMBER, extract_from_wheel

    if wheel is not None:
        if not wheel.is_file():
            raise FileNotFoundError(f"{wheel}: no such wheel")
        return extract_from_wheel(wheel, MNI152_MEMBER, dest)
    with tempfile.TemporaryDirectory() as tmp:
        return extract_from_wheel(download_nilearn_wheel(Path(tmp)), MNI152_MEMBER, dest)


def fetch(args: argparse.Namespace) -> int:
    import zipfile

    from metasrgan.data import offline

    dest = args.dest or default_data_dir()
    try:
        path = fetch_mni152(dest, args.wheel)
    except zipfile.BadZipFile:
        raise ValueError(f"{args.wheel}: not a wheel (zip) file") from None
    print(f"MNI152: {path}")
    for name in ("colin27", "colin27-bet", "inia19"):
        try:
            print(f"{name}: {offline.locate(name)}")
        except FileNotFoundError as err:
            print(f"{name}: missing: {err}")
    return 0
