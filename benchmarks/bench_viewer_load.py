"""Load test of the viewer: real HTTP on loopback, the server in a second process.

Run: ``python benchmarks/bench_viewer_load.py [--requests 60] [--concurrency 4]
[--time-limit 180] [--threads 2] [--model CKPT]``.

The server (``metasrgan serve --port 0 --threads N``) runs in its own process; this process
uploads a 240x240x12 volume (the bundled real Colin27 slab, zero-padded the way BraTS
slices are) and measures, in one run on the same machine:

0. baseline: :func:`metasrgan.inference.upscale_image` called directly in this process (the
   whole model at each scale: what a zoom would cost without the viewer's design);
1. slider: one client, sequential zooms of one slice at distinct scales (the first pays for
   the slice's features, later ones reuse them);
2. load: ``--concurrency`` clients at once on random slices and scales, bounded by
   ``--requests`` and ``--time-limit``;
3. burst: one client firing requests faster than they compute (a dragged slider without
   aborts): only the newest may compute, the rest must come back ``409 superseded``.

Prints latency percentiles per scenario, their ratio to the baseline, and failures (any
answer other than 200, or 409 where superseding is expected); exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SIDE = 240


def make_volume(folder: Path) -> Path:
    """The Colin27 slab (181x213x12, real MRI) centred in a 240x240 field, 1 mm."""
    import nibabel as nib

    from metasrgan.samples_path import sample_path

    slab = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)
    vol = np.zeros((SIDE, SIDE, slab.shape[2]), np.float32)
    x0, y0 = (SIDE - slab.shape[0]) // 2, (SIDE - slab.shape[1]) // 2
    vol[x0 : x0 + slab.shape[0], y0 : y0 + slab.shape[1]] = slab
    path = folder / "colin27_240.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    return path


def start_server(args) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "metasrgan.cli", "serve", "--port", "0"]
    cmd += ["--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if found:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep it drained
            return proc, found.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("the viewer's server did not start")


def percentiles(ms: list[float]) -> str:
    if not ms:
        return "no successful requests"
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"n={len(ms):3d}  p50 {p50:7.1f}  p90 {p90:7.1f}  p99 {p99:7.1f}  max {max(ms):7.1f} ms"


def distinct_scales(n: int, rng: random.Random) -> list[float]:
    """``n`` slider positions whose snapped fractions all differ (no result-cache hits)."""
    from metasrgan.viewer.engine import snap_scale

    seen, out = set(), []
    while len(out) < n:
        s = round(rng.uniform(1.05, 4.0), 2)
        if snap_scale(s) not in seen:
            seen.add(snap_scale(s))
            out.append(s)
    return out


def baseline(args, volume_path: Path, scales: list[float]) -> list[float]:
    """Direct ``upscale_image`` on the same slice (features recomputed every time)."""
    import warnings

    import torch

    from metasrgan.inference import load, upscale_image
    from metasrgan.intensity import IntensityMap
    from metasrgan.viewer.engine import snap_scale
    from metasrgan.viewer.volumes import load_volume

    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load(args.model)
    volume = load_volume(volume_path)
    image = volume.slice("axial", 6)
    intensity = IntensityMap.fit(volume.data)
    upscale_image(model, image, 2, intensity=intensity)  # warm-up
    times = []
    for s in scales:
        t0 = time.perf_counter()
        upscale_image(model, image, snap_scale(s), intensity=intensity)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests in the load phase")
    parser.add_argument("--concurrency", type=int, default=4, help="clients at once")
    parser.add_argument("--slider", type=int, default=20, help="zooms in the slider phase")
    parser.add_argument("--burst", type=int, default=15, help="requests in the burst phase")
    parser.add_argument("--time-limit", type=float, default=180, help="seconds for the load")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import httpx

    rng = random.Random(args.seed)
    results: dict = {"threads": args.threads, "cpus": os.cpu_count(), "side": SIDE}
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        volume_path = make_volume(Path(tmp))
        proc, url = start_server(args)
        try:
            with httpx.Client(base_url=url, timeout=120) as http:
                info = http.get("/api/info").json()
                model = info["model"]
                vol = http.post(
                    "/api/volumes",
                    params={"filename": volume_path.name},
                    content=volume_path.read_bytes(),
                    headers={"x-metasrgan-token": info["token"]},
                ).json()
                print(f"server {url}  model {model['name']} untrained={model['untrained']}  ")
                print(f"volume {vol['shape']} (axial slices {vol['slice_shapes']['axial']})")

                def zoom(client: str, seq: int, index: int, scale: float):
                    params = dict(volume=vol["id"], axis="axial", index=index, scale=scale)
                    t0 = time.perf_counter()
                    r = http.get("/api/zoom", params={**params, "client": client, "seq": seq})
                    return r, (time.perf_counter() - t0) * 1e3

                # 1. slider: one client, one slice, distinct scales
                slider_scales = distinct_scales(args.slider, rng)
                first, rest, server_ms = None, [], []
                for seq, s in enumerate(slider_scales):
                    r, ms = zoom("slider", seq, 6, s)
                    if r.status_code != 200:
                        failures.append(f"slider x{s}: {r.status_code} {r.text[:200]}")
                        continue
                    body = r.json()
                    if seq == 0:
                        first = ms
                    else:
                        rest.append(ms)
                        server_ms.append(body["timings_ms"]["metasrgan"])
                results["slider_first_ms"] = first
                results["slider_ms"] = rest
                results["slider_model_ms"] = server_ms

                # 2. load: concurrent clients (each sequential, as a page is), bounded
                deadline = time.monotonic() + args.time_limit
                jobs = [
                    (f"load-{i % args.concurrency}", i, rng.randrange(12), rng.uniform(1, 4))
                    for i in range(args.requests)
                ]
                load_ms: list[float] = []
                lock = threading.Lock()

                def one(job):
                    if time.monotonic() > deadline:
                        return "skipped"
                    try:
                        r, ms = zoom(*job)
                    except httpx.HTTPError as err:
                        return f"{job}: {type(err).__name__} {err}"
                    if r.status_code != 200:
                        return f"{job}: {r.status_code} {r.text[:200]}"
                    with lock:
                        load_ms.append(ms)
                    return None

                def client_run(c):
                    return [one(job) for job in jobs[c :: args.concurrency]]

                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.concurrency) as pool:
                    outcomes = [
                        o for run in pool.map(client_run, range(args.concurrency)) for o in run
                    ]
                results["load_wall_s"] = time.perf_counter() - t0
                results["load_ms"] = load_ms
                skipped = outcomes.count("skipped")
                failures += [o for o in outcomes if o not in (None, "skipped")]
                results["load_skipped"] = skipped  # the time bound, not a server failure

                # 3. burst: requests faster than they compute; stale ones must be dropped
                before = http.get("/api/stats").json()
                burst_scales = distinct_scales(args.burst, rng)
                answers: dict[int, int] = {}

                def fire(seq):
                    r, _ = zoom("burst", seq, 3, burst_scales[seq])
                    answers[seq] = r.status_code

                threads = []
                t0 = time.perf_counter()
                for seq in range(args.burst):
                    threads.append(threading.Thread(target=fire, args=(seq,)))
                    threads[-1].start()
                    time.sleep(0.01)
                for t in threads:
                    t.join(120)
                results["burst_wall_ms"] = (time.perf_counter() - t0) * 1e3
                after = http.get("/api/stats").json()
                computed = after["computed"] - before["computed"]
                results["burst"] = {
                    "sent": args.burst,
                    "computed": computed,
                    "superseded": after["superseded"] - before["superseded"],
                    "dropped_after_features": after["dropped_after_features"]
                    - before["dropped_after_features"],
                }
                if answers.get(args.burst - 1) != 200:
                    failures.append(f"burst: the newest request got {answers.get(args.burst - 1)}")
                bad = {s: c for s, c in answers.items() if c not in (200, 409)}
                if bad:
                    failures.append(f"burst: unexpected answers {bad}")
        finally:
            proc.terminate()
            proc.wait(10)

        base = baseline(args, volume_path, slider_scales[1:])
        results["baseline_ms"] = base

    print(f"\n{SIDE}x{SIDE} slices, server: {args.threads} torch threads; {os.cpu_count()} CPUs")
    print(f"baseline upscale_image (direct) {percentiles(base)}")
    print(f"slider, first zoom of a slice   {results['slider_first_ms']:.1f} ms (features)")
    print(f"slider, later zooms (HTTP)      {percentiles(results['slider_ms'])}")
    print(f"  of which Meta-SRGAN on server {percentiles(results['slider_model_ms'])}")
    print(f"load x{args.concurrency} clients (HTTP)     {percentiles(results['load_ms'])}")
    print(
        f"  {len(results['load_ms'])} answered in {results['load_wall_s']:.1f} s, "
        f"{results['load_skipped']} not sent (past --time-limit)"
    )
    b = results["burst"]
    print(
        f"burst: {b['sent']} requests 10 ms apart -> {b['computed']} computed, "
        f"{b['superseded']} superseded before computing, "
        f"{b['dropped_after_features']} dropped after features, "
        f"{results['burst_wall_ms']:.0f} ms until the newest answered"
    )
    if results["slider_ms"] and base:
        ratio = np.median(results["slider_ms"]) / np.median(base)
        results["slider_over_baseline"] = float(ratio)
        print(f"slider p50 / baseline p50 = {ratio:.2f} (below 1: the viewer beats direct calls)")
    print(f"failures: {len(failures)}")
    for f in failures[:20]:
        print(f"  {f}")
    results["failures"] = failures
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
