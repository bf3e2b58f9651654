"""``metasrgan upscale INPUT --scale S --output OUTPUT``: files, volumes or folders.

A 2D image (PNG/TIFF/JPEG/NPY, or a 2D NIfTI) is upscaled by ``--scale`` or to ``--size``;
a volume (NIfTI, DICOM series) slice-wise in-plane by ``--scale`` or on every axis to
``--spacing``.  Outputs keep the input's intensity units; volumes get the refined affine.
Over a folder, each failure is reported and the rest still run; the exit code is 1 when any
file failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="image, volume, DICOM series folder, or a folder of them")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--scale", type=str, help="factor, e.g. 2.5 (in-plane for volumes)")
    how.add_argument("--size", help="output size HxW for 2D images, e.g. 480x480")
    how.add_argument(
        "--spacing", type=str, help="target voxel size in mm for volumes (e.g. 1 or 1,1,1)"
    )
    parser.add_argument("--output", "-o", required=True, help="output file (folder for a folder)")
    parser.add_argument("--model", help="model file (.safetensors); default: the shipped model")
    parser.add_argument(
        "--axes", type=int, nargs=2, metavar=("A", "B"),
        help="in-plane voxel axes of a volume (default: from the header)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    parser.add_argument(
        "--batch", type=int, default=1, help="slices per forward pass (1 is fastest on CPUs)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size is HxW, e.g. 480x480; got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"--size must be positive, got {text!r}")
    return h, w


def _parse_spacing(text: str) -> float | tuple[float, float, float]:
    values = [float(v) for v in text.split(",")]
    if len(values) == 1:
        return values[0]
    if len(values) != 3:
        raise ValueError(f"--spacing is one value or three (x,y,z), got {text!r}")
    return tuple(values)


def upscale_file(model, src: Path, dst: Path, args: argparse.Namespace) -> str:
    """Upscale one input to ``dst``; returns a one-line summary."""
    import numpy as np

    from metasrgan.data.io import MRImage, read_image, write_image
    from metasrgan.inference import upscale_image
    from metasrgan.scale import AxisScale, Scale2d, scale_from_sizes

    image = read_image(src)
    data = image.array
    if data.ndim == 3 and 1 in data.shape:
        data = data.squeeze()  # a single-slice volume is a 2D image
    if data.ndim == 2:
        if args.spacing:
            raise ValueError(f"{src}: --spacing applies to volumes; use --scale or --size")
        if args.size:
            h, w = _parse_size(args.size)
            fh, fw = scale_from_sizes(data.shape[0], h), scale_from_sizes(data.shape[1], w)
            scale = Scale2d(AxisScale(fh.numerator, fh.denominator),
                            AxisScale(fw.numerator, fw.denominator))  # fmt: skip
            out = upscale_image(model, data, scale, (h, w))
        else:
            scale = Scale2d.of(args.scale)
            out = upscale_image(model, data, scale)
        affine = None
        if image.affine is not None:
            from metasrgan.volume import scaled_affine

            fh, fw = out.shape[0] / data.shape[0], out.shape[1] / data.shape[1]
            affine = scaled_affine(image.affine, (fh, fw, 1.0))
            out = out.reshape(out.shape + (1,) * (image.array.ndim - 2))
        if image.source_dtype in ("uint8", "uint16") and dst.suffix.lower() in (".png", ".jpg"):
            info = np.iinfo(image.source_dtype)  # same units and bit depth as the input
            out = np.clip(np.rint(out), info.min, info.max)
        bits = 16 if image.source_dtype == "uint16" else 8
        write_image(dst, MRImage(out.astype(np.float32), affine, (), src, image.header), bits)
        return f"{src} -> {dst}  {data.shape} -> {out.shape[:2]}"
    if args.size:
        raise ValueError(f"{src}: --size applies to 2D images; use --scale or --spacing")
    from metasrgan.volume import check_spacing, plan_volume, upscale_volume

    if image.affine is None:
        raise ValueError(f"{src}: a volume without an affine cannot be resampled safely")
    plan = plan_volume(
        data.shape, image.affine,
        scale=args.scale if args.scale else None,
        spacing=_parse_spacing(args.spacing) if args.spacing else None,
        axes=tuple(args.axes) if args.axes else None,
    )  # fmt: skip
    check_spacing(image.affine)
    for note in plan.notes():
        print(f"note: {src.name}: {note}", file=sys.stderr)
    out, affine = upscale_volume(model, data, image.affine, plan, args.batch, not args.no_progress)
    write_image(dst, MRImage(out, affine, (), src, image.header))
    _write_sidecar(dst, src, plan, model)
    return f"{src} -> {dst}  {data.shape} -> {out.shape} (factors {[str(f) for f in plan.factors]})"


def _write_sidecar(dst: Path, src: Path, plan, model) -> None:
    """BIDS-style provenance next to a NIfTI output."""
    from metasrgan import __version__

    name = dst.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            side = dst.with_name(name[: -len(suffix)] + ".json")
            break
    else:
        return
    meta = getattr(model, "metadata", {}) or {}
    side.write_text(json.dumps({
        "Sources": [str(src)],
        "SuperResolution": {
            "Tool": f"metasrgan {__version__}",
            "Model": meta.get("name", meta.get("model", {}).get("name", "meta-srgan")),
            "ModelUntrained": bool(meta.get("untrained", False)),
            "Factors": [str(f) for f in plan.factors],
        },
    }, indent=2) + "\n")  # fmt: skip


def output_path(src: Path, root: Path, output: Path, folder_mode: bool) -> Path:
    """Where the output of ``src`` goes: ``output`` itself, or its place under the folder
    ``output`` mirroring ``root`` (DICOM inputs become NIfTI: DICOM is not written)."""
    if not folder_mode:
        return output
    rel = src.relative_to(root)
    if src.is_dir():
        rel = rel.with_name(src.name + ".nii.gz") if rel.parts else Path(root.name + ".nii.gz")
    elif rel.suffix.lower() == ".dcm":
        rel = rel.with_suffix(".nii.gz")
    return output / rel


def run(args: argparse.Namespace) -> int:
    import torch

    from metasrgan import inference
    from metasrgan.data.io import find_images

    if args.threads:
        torch.set_num_threads(args.threads)
    src = Path(args.input)
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src}")
    output = Path(args.output)
    model = inference.load(args.model, inference.pick_device(args.device))
    if getattr(model, "metadata", {}).get("untrained"):
        print("WARNING: no trained model available; outputs come from an UNTRAINED network",
              file=sys.stderr)  # fmt: skip
    inputs = find_images(src)
    folder_mode = src.is_dir() and inputs != [src]  # a folder that is not one DICOM series
    if folder_mode:
        if not inputs:
            raise ValueError(f"no readable images in {src}")
        if output.exists() and not output.is_dir():
            raise ValueError(f"{output} exists and is not a folder (the input is a folder)")
        output.mkdir(parents=True, exist_ok=True)
    failures = 0
    for item in inputs:
        try:
            dst = output_path(item, src, output, folder_mode)
            print(upscale_file(model, item, dst, args))
        except (ValueError, OSError) as err:
            failures += 1
            print(f"FAILED {item}: {err}", file=sys.stderr)
            if args.debug:
                raise
    if failures:
        print(f"{failures} of {len(inputs)} input(s) failed", file=sys.stderr)
        return 1
    return 0
