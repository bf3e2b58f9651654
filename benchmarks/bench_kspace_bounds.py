"""How far inference-time choices can take a model on clean k-space input: an upper bound.

Run (repository root, the project's venv)::

    .venv/bin/python -m benchmarks.bench_kspace_bounds [--model FILE] [--data SOURCES]

A data-consistent model's k-space output is ``sinc(LR) + g * beyond + (1 - trust) * band``:
the network's residual split into its part beyond the acquired band (scaled by the
self-calibration gain ``g``) and within it (kept as far as the band trust lets the network
replace the measurement).  On clean input the measurement is the truth's band, so the best
any trust can do is 1, and the best any gain can do is each image's least-squares gain
against the HR image (an oracle no method has).  This script scores, per image and scale,
the gain over zero-filled sinc of the model as it is, with trust 1, and with trust 1 and the
oracle gain: if the last stays below a bar, no calibration or gate of this network reaches
it, and only a better guess beyond the band can.  Maximal-information crop, as
:mod:`metasrgan.evaluation` scores.  Results: ``benchmarks/README.md``, "Self-ensemble".
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

VARIANTS = ("as shipped", "trust 1", "trust 1, oracle gain")


def bounds(model, images, scales) -> dict[tuple[str, float], list[np.ndarray]]:
    """``{(source, scale): [per-image gains over zero-filled sinc, one per VARIANTS]}``."""
    import torch

    from metasrgan.degradations.fourier import acquired_band
    from metasrgan.evaluation.protocol import information_window, prepare, shift_window
    from metasrgan.interpolation import interpolate
    from metasrgan.metrics import psnr

    out = defaultdict(list)
    for index, im in enumerate(images):
        window = information_window(im.array, (128, 128))
        for s in scales:
            b = prepare(torch.from_numpy(im.array)[None, None].float(), s, "kspace", seed=index)
            x, hr, lr_shape = b.lr, b.hr, tuple(b.lr.shape[-2:])
            shape = tuple(hr.shape[-2:])
            t, left, h, w = shift_window(window, b.origin, shape)
            sigma = model.noise_level(x)
            r = model.residual(model.extract_features(x, sigma), b.scale, shape, "kspace")
            skip = model.skip_image(x, shape, "kspace")
            band = acquired_band(r, lr_shape)
            beyond = r - band
            g = model.calibration_gains(x, "kspace", sigma)[0, 0]
            trust = model.band_trust(x, sigma)[0]
            missing = (hr - skip) - acquired_band(hr - skip, lr_shape)
            oracle = ((beyond * missing).sum() / (beyond * beyond).sum().clamp(min=1e-20)).clamp(0)

            crop = (slice(t, t + h), slice(left, left + w))
            ref = hr[0, 0].double().numpy()[crop]
            outputs = (interpolate(x, shape, "sinc"), skip + g * beyond + (1 - trust) * band,
                       skip + g * beyond, skip + oracle * beyond)  # fmt: skip
            scores = [psnr(y.clamp(0, 1)[0, 0].double().numpy()[crop], ref, 1.0)
                      for y in outputs]  # fmt: skip
            out[(im.name.split(":")[0], float(s))].append(np.array(scores[1:]) - scores[0])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="shipped")
    p.add_argument("--data", default="inia19_macaque,epi_nibabel,mr_small_pydicom")
    p.add_argument("--scales", default="1.2:4.0:0.4")
    p.add_argument("--max-images", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    from metasrgan.evaluation import load_images, parse_scales
    from metasrgan.inference import load

    torch.set_num_threads(args.threads)
    model = load(None if args.model == "shipped" else args.model).eval()
    images = load_images(args.data, args.max_images)
    with torch.inference_mode():
        rows = bounds(model, images, parse_scales(args.scales))
    print("| source | scale | " + " | ".join(VARIANTS) + " |")
    print("|---|---:|" + "---:|" * len(VARIANTS))
    for (source, s), gains in sorted(rows.items()):
        mean = np.mean(gains, axis=0)
        print(f"| {source} | x{s:g} | " + " | ".join(f"{v:+.2f}" for v in mean) + " |")
    every = np.concatenate([np.stack(g) for g in rows.values()]).mean(axis=0)
    print("\nmean over images and scales (dB over zero-filled sinc): "
          + ", ".join(f"{n} {v:+.2f}" for n, v in zip(VARIANTS, every, strict=True)))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
