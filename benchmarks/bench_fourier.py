"""Fourier resampling by cached per-axis matrices against the complex128 FFTs it replaced.

Run: ``python -m benchmarks.bench_fourier [--threads 2] [--repeats 5] [--json FILE]``.

Both compute :func:`metasrgan.degradations.fourier.fourier_resize` (the matrices are built
by the FFT code from the identity): the viewer's and the model's sinc skip and acquired
band (256 -> 512/1024 and back), a volume's batch of 5 slices (240 -> 480), and large
images (512-2048 a side), both boundaries, float32.  Times are medians of calls alternating
between the two; the matrices' one-off build time and the largest difference are printed
too.  Absolute times are noisy on a shared machine; the ratio is the figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.bench_upscale import interleaved
from metasrgan.degradations import fourier

CASES = [  # (batch, source side, target side)
    (1, 256, 512),
    (1, 256, 1024),
    (1, 1024, 256),
    (5, 240, 480),
    (1, 512, 2048),
    (1, 2048, 1024),
]


def measure(batch: int, n: int, m: int, boundary: str, repeats: int) -> dict:
    x = torch.rand(batch, 1, n, n, generator=torch.Generator().manual_seed(n))
    fourier.axis_matrix.cache_clear()
    start = time.perf_counter()
    got = fourier.fourier_resize(x, (m, m), boundary)  # builds (and caches) the matrices
    build = time.perf_counter() - start
    exact = fourier.fourier_resize_fft(x, (m, m), boundary)
    t = interleaved(
        {
            "fft": lambda: fourier.fourier_resize_fft(x, (m, m), boundary),
            "matrices": lambda: fourier.fourier_resize(x, (m, m), boundary),
        },
        repeats,
    )
    return {
        "batch": batch, "n": n, "m": m, "boundary": boundary, "fft_ms": t["fft"] * 1e3,
        "matrices_ms": t["matrices"] * 1e3, "speedup": t["fft"] / t["matrices"],
        "first_call_ms": build * 1e3, "max_abs_diff": float((got - exact).abs().max()),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; median of {args.repeats}")
    print(
        "| batch x size | boundary | FFT ms | matrices ms | speed-up | first call ms | max diff |"
    )  # noqa: E501
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for batch, n, m in CASES:
        for boundary in ("periodic", "mirror"):
            r = measure(batch, n, m, boundary, args.repeats)
            rows.append(r)
            print(f"| {batch}x{n}^2 -> {m}^2 | {boundary} | {r['fft_ms']:.1f} | "
                  f"{r['matrices_ms']:.1f} | {r['speedup']:.1f}x | {r['first_call_ms']:.0f} | "
                  f"{r['max_abs_diff']:.1e} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
