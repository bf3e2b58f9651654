"""The viewer under abuse: one client's long zoom against another's small ones, gzip bombs.

Run: ``python -m benchmarks.bench_viewer_limits [--threads 2] [--small 12] [--json F]``.

The server (``metasrgan serve --port 0``, two compute workers) runs in its own process:

1. fairness: client "light" zooms a 256x256 slice (features warm) at distinct scales, first
   alone, then while client "heavy" zooms a 1024x1024 slice at x4 with cold features (the
   largest zoom one request may ask for).  Reported: light's latencies alone and during the
   heavy zoom, and the heavy zoom's duration.  Target: light is delayed by at most 1 s.
2. gzip bombs: three uploads at once of 0.5 MB each that inflate to 512 MiB (a header that
   declares 512^3 float32 voxels).  The server's RSS is sampled every 5 ms; reported: the
   peak increase, against the configured decode limit (``--max-voxels`` x 4 bytes).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.bench_viewer_browser import make_volume, stats
from benchmarks.bench_viewer_load import start_server


def big_png() -> bytes:
    """A 1024x1024 real-MRI-like image: the Colin27 slice tiled, as an 8-bit PNG."""
    import nibabel as nib
    from PIL import Image

    from metasrgan.samples_path import sample_path

    data = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)[:, :, 6]
    tile = np.clip(data / data.max() * 255, 0, 255).astype(np.uint8)
    image = np.tile(tile, (6, 6))[:1024, :1024]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def gzip_bomb(side: int = 512) -> bytes:
    """0.5 MB of gzip declaring (and holding) ``side``^3 float32 voxels: 512 MiB.  One member
    of 16 MiB of zeros repeated: a multi-member gzip is one valid stream."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((side, side, side))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    zeros = gzip.compress(bytes(16 * 1024**2), compresslevel=9)
    head = gzip.compress(header.binaryblock + b"\0" * 4)
    return head + zeros * (side**3 * 4 // (16 * 1024**2))


class RssSampler:
    """Peak resident memory of a process, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.005):
        import psutil

        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def fairness(http, token: dict, volume: Path, n: int, failures: list[str]) -> dict:
    """Light zooms alone, then while a heavy zoom of another client runs."""
    small = http.post(
        "/api/volumes", params={"filename": volume.name}, content=volume.read_bytes(),
        headers=token,
    ).json()  # fmt: skip
    large = http.post(
        "/api/volumes", params={"filename": "big.png"}, content=big_png(), headers=token
    ).json()

    def light(scale: float, seq: int) -> float:
        params = dict(volume=small["id"], axis="axial", index=6, scale=scale)
        t0 = time.perf_counter()
        r = http.get("/api/zoom.bin", params={**params, "client": "light", "seq": seq})
        if r.status_code != 200:
            failures.append(f"light x{scale}: {r.status_code} {r.text[:200]}")
        return (time.perf_counter() - t0) * 1e3

    heavy_ms: list[float] = []

    def heavy():
        params = dict(volume=large["id"], axis="axial", index=0, scale=4.0)
        t0 = time.perf_counter()
        r = http.get("/api/zoom.bin", params={**params, "client": "heavy"})
        heavy_ms.append((time.perf_counter() - t0) * 1e3)
        if r.status_code != 200:
            failures.append(f"heavy: {r.status_code} {r.text[:200]}")

    light(2.0, 0)  # features of the light slice
    scales = [round(1.1 + 0.1 * k, 1) for k in range(2 * n)]
    alone = [light(s, i + 1) for i, s in enumerate(scales[:n])]
    thread = threading.Thread(target=heavy)
    thread.start()
    time.sleep(0.3)  # the heavy zoom is computing its features now
    during = []
    for i, s in enumerate(scales[n:]):
        if not thread.is_alive():
            break
        during.append(light(s, 100 + i))
    thread.join()
    delay = (max(during) - float(np.median(alone))) if during else float("nan")
    print(f"light zooms alone          {stats(alone)}")
    print(f"light zooms during heavy   {stats(during)}")
    print(f"heavy zoom (1024x1024 x4, cold features) {heavy_ms[0]:.0f} ms")
    print(f"worst delay of a light zoom: {delay:.0f} ms (target <= 1000 ms)")
    return {"alone_ms": alone, "during_ms": during, "heavy_ms": heavy_ms, "worst_delay_ms": delay}


def bombs(http, token: dict, pid: int, limit: int, failures: list[str]) -> dict:
    """Three gzip bombs at once, the server's RSS sampled meanwhile."""
    bomb = gzip_bomb()
    base = RssSampler(pid).proc.memory_info().rss

    def upload(i: int):
        return http.post(
            "/api/volumes", params={"filename": f"bomb{i}.nii.gz"}, content=bomb, headers=token
        )

    with RssSampler(pid) as rss, ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(upload, range(3)))
    codes = [a.status_code for a in answers]
    rise = rss.peak - base
    print(
        f"\n3 gzip bombs of {len(bomb) / 1024:.0f} KB (512 MiB inflated) at once: "
        f"answers {codes}, server RSS +{rise / 1024**2:.1f} MB at peak "
        f"(decode limit {limit / 1024**2:.0f} MB)"
    )
    if any(c != 413 for c in codes):
        failures.append(f"bombs answered {codes}, not 413")
    print("message:", answers[0].json()["error"])
    return {"bomb_bytes": len(bomb), "bomb_codes": codes, "bomb_rss_rise": rise, "limit": limit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--small", type=int, default=12, help="light zooms alone and during")
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import httpx

    results: dict = {"cpus": os.cpu_count(), "load": os.getloadavg()}
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        volume = make_volume(Path(tmp))
        proc, url = start_server(args)
        try:
            http = httpx.Client(base_url=url, timeout=300)
            info = http.get("/api/info").json()
            token = {"x-metasrgan-token": info["token"]}
            print(f"server {url}; load average {os.getloadavg()}")
            results.update(fairness(http, token, volume, args.small, failures))
            limit = info["limits"]["max_voxels"] * 4
            results.update(bombs(http, token, proc.pid, limit, failures))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"failures: {failures}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
