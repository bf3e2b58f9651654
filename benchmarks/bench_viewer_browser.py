"""The viewer as a user feels it, in headless Chromium: zoom steps, a drag, slice changes.

Run: ``python -m benchmarks.bench_viewer_browser [--threads 2] [--rounds 3] [--json F]``.

The server (``metasrgan serve --port 0``) runs in its own process with the shipped model; the
page is driven by Selenium.  A 256x256x12 volume (the bundled real Colin27 slab, zero-padded
to 256x256 as BraTS slices are) is uploaded through the page, then:

1. zoom steps: on each of ``--rounds`` slices, the zoom slider is set to every scale
   1.0, 1.1, ..., 4.0 (shuffled; each a new result for the page, features of the slice
   cached) and the page records the time from the slider's ``input`` event to the new
   Meta-SRGAN pixels drawn (``ms``) and to the next display frame after that (``frame``).
   Before each slice's sweep the bench waits for the server's look-ahead: all of it
   (``--sweep-wait idle``, warm: the zoom stops prefetched) or its first zoom stop only
   (``first``); ``--zoom-cache-mb 0`` turns the zoom look-ahead off (the cold baseline);
2. a drag: 60 ``input`` events 16 ms apart across x1.5-x3.9, how many results were shown
   and how long after the last event the final one appeared;
3. slice changes at x2: ArrowUp once the look-ahead is idle (warm: the features of the next
   slice were computed ahead) and, on a second volume never seen, PageUp +5 (cold: beyond
   the look-ahead's reach).

Prints distributions (p50/p95/max per scale band and overall).  Needs Debian's chromium and
chromedriver (``scripts/install_browser.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_viewer_load import start_server

SIDE = 256


def make_volume(folder: Path, flip: bool = False) -> Path:
    """The Colin27 slab zero-padded to 256x256 (mirrored left-right: another scan)."""
    import nibabel as nib

    from metasrgan.samples_path import sample_path

    slab = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)
    vol = np.zeros((SIDE, SIDE, slab.shape[2]), np.float32)
    x0, y0 = (SIDE - slab.shape[0]) // 2, (SIDE - slab.shape[1]) // 2
    vol[x0 : x0 + slab.shape[0], y0 : y0 + slab.shape[1]] = slab[::-1] if flip else slab
    path = folder / f"colin27_{SIDE}{'_mirrored' if flip else ''}.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    return path


def start_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


# In the page: set an input (or press a key), wait until the zoom ``key`` is shown and its
# frame painted, and return the page's own record of it (null if it was on screen already).
STEP = """
const [id, value, key, done] = [arguments[0], arguments[1], arguments[2], arguments[3]];
const z = window.viewerStats.zooms;
if (z.length && z[z.length - 1].key === key) { done(null); return; }
const before = z.length;
if (id === 'key') {
  document.dispatchEvent(new KeyboardEvent('keydown', {key: value, bubbles: true}));
} else {
  const el = document.getElementById(id);
  el.value = String(value);
  el.dispatchEvent(new Event('input', {bubbles: true}));
}
const t0 = performance.now();
(function poll() {
  const last = z[z.length - 1];
  if (z.length > before && last.key === key && last.frameMs !== undefined) {
    done(last);
  } else if (performance.now() - t0 > 120000) {
    done({timeout: true});
  } else {
    setTimeout(poll, 2);
  }
})();
"""

DRAG = """
const done = arguments[arguments.length - 1];
const el = document.getElementById('scale');
const before = window.viewerStats.zooms.length;
const values = arguments[0];
let i = 0;
let lastEvent = 0;
const timer = setInterval(() => {
  el.value = String(values[i]);
  el.dispatchEvent(new Event('input', {bubbles: true}));
  lastEvent = performance.now();
  if (++i === values.length) {
    clearInterval(timer);
    const want = values[values.length - 1].toFixed(2);
    (function poll() {
      const z = window.viewerStats.zooms;
      const last = z[z.length - 1];
      if (z.length > before && last.key.endsWith(`/${want}/${want}`)) {
        done({shown: z.length - before, afterLast: performance.now() - lastEvent,
              ms: z.slice(before).map((e) => e.ms)});
      } else { setTimeout(poll, 2); }
    })();
  }
}, 16);
"""


def stats(ms: list[float]) -> str:
    if not ms:
        return "n=0"
    p50, p95 = np.percentile(ms, [50, 95])
    return f"n={len(ms):3d}  p50 {p50:6.1f}  p95 {p95:6.1f}  max {max(ms):6.1f} ms"


def wait_idle(http, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = http.get("/api/stats").json()
        if s["pending"] == 0 and s["lookahead_queued"] == 0 and not s["lookahead_running"]:
            return
        time.sleep(0.05)
    raise RuntimeError("the server's look-ahead did not finish")


class Page:
    """The viewer page in Chromium, with the server's HTTP API beside it."""

    def __init__(self, browser, http, url: str):
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser, self.http = browser, http
        self.wait = WebDriverWait(browser, 120, poll_frequency=0.05)
        browser.get(url)
        self.wait.until(lambda d: d.execute_script("return window.viewerStats.zooms.length") > 0)
        self.vol_id = ""

    def open(self, path: Path) -> None:
        """Upload a scan through the page's file input and wait until it is shown."""
        message = lambda d: d.find_element("id", "message").text  # noqa: E731
        self.browser.find_element("id", "upload").send_keys(str(path))
        self.wait.until(lambda d: path.name in message(d) and "voxels of" in message(d))
        value = self.browser.execute_script("return document.getElementById('volume').value")
        self.vol_id = value.split(":", 1)[1]

    def choose(self, control: str, value: str) -> None:
        self.browser.execute_script(
            "const c = document.getElementById(arguments[0]); c.value = arguments[1];"
            "c.dispatchEvent(new Event('change'))",
            control,
            value,
        )

    def step(self, control: str, value, index: int, scale: float) -> dict | None:
        """Move ``control`` (or press a key) and wait for the zoom of ``index`` at ``scale``."""
        key = f"{self.vol_id}/axial/{index}/{scale:.2f}/{scale:.2f}"
        rec = self.browser.execute_async_script(STEP, control, value, key)
        if rec and rec.get("timeout"):
            raise RuntimeError(f"no result for {key}")
        return rec


def wait_first_prefetch(http, timeout: float = 120.0) -> None:
    """Until the zoom look-ahead has finished one stop of the new slice (so its features are
    cached) and no more: the user zooms while the look-ahead is still under way."""
    done = http.get("/api/stats").json().get("zoom_prefetch_done")
    if done is None:  # no zoom look-ahead on the server: the features alone
        return wait_idle(http, timeout)
    deadline = time.monotonic() + timeout
    while http.get("/api/stats").json()["zoom_prefetch_done"] == done:
        if time.monotonic() > deadline:
            raise RuntimeError("the zoom look-ahead did not start")
        time.sleep(0.01)


def zoom_sweep(
    page: Page, scales: list[float], rounds: int, rng, wait: str = "idle"
) -> dict[float, list[dict]]:
    """Park at x1 (no work), move to the slice, let the look-ahead compute its features
    (``wait="idle"``: and every zoom stop; ``"first"``: one stop only), then every scale
    once in shuffled order; ``rounds`` slices."""
    per_scale: dict[float, list[dict]] = {s: [] for s in scales}
    for r in range(rounds):
        index = 3 + 3 * r
        page.step("scale", 1.0, 6 if r == 0 else 3 * r, 1.0)
        page.step("slice", index, index, 1.0)
        t0 = time.monotonic()
        time.sleep(0.5)  # a view from the page's cache tells the server in a hint of its own
        (wait_idle if wait == "idle" else wait_first_prefetch)(page.http)
        print(f"  slice {index}: look-ahead waited for {time.monotonic() - t0:.1f} s")
        order = scales[1:]
        rng.shuffle(order)
        for s in order:
            per_scale[s].append(page.step("scale", s, index, s))
        per_scale[1.0].append(page.step("scale", 1.0, index, 1.0))
    return per_scale


def report_zoom(per_scale: dict[float, list[dict]]) -> None:
    everything = [rec for recs in per_scale.values() for rec in recs]
    print(f"\nzoom step, slider to new Meta-SRGAN pixels ({SIDE}x{SIDE} slice):")
    for lo, hi in ((1.0, 1.95), (1.95, 2.95), (2.95, 4.01)):
        band = [rec for s, recs in per_scale.items() if lo <= s < hi for rec in recs]
        print(f"  x{lo:.1f}-{min(hi, 4.0):.1f}  drawn {stats([b['ms'] for b in band])}")
        print(f"            frame {stats([b['frameMs'] for b in band])}")
    print(f"  all       drawn {stats([b['ms'] for b in everything])}")
    print(f"            frame {stats([b['frameMs'] for b in everything])}")
    slowest = sorted(per_scale, key=lambda s: -np.median([r["ms"] for r in per_scale[s]]))
    worst = [f"x{s} {np.median([r['ms'] for r in per_scale[s]]):.0f}" for s in slowest[:6]]
    print("  slowest scales (p50 ms): " + ", ".join(worst))
    hits = [b for b in everything if b.get("cached")]
    computed = [b for b in everything if not b.get("cached")]
    print(f"  from the server's caches (look-ahead) drawn {stats([b['ms'] for b in hits])}")
    print(f"  computed for the request           drawn {stats([b['ms'] for b in computed])}")
    server_ms = [b["server"]["metasrgan"] for b in computed if b["server"]]
    where = sorted({b.get("where") for b in everything if b.get("where")})
    print(f"  of which Meta-SRGAN itself ({', '.join(where)}) {stats(server_ms)}")
    request_ms = [b["server"]["request"] for b in hits if b["server"]]
    print(f"  cached: the server's handling {stats(request_ms)}")


def drag(page: Page, index: int) -> dict:
    """60 input events 16 ms apart across x1.5-x3.9."""
    values = [float(v) for v in np.round(np.linspace(1.5, 3.9, 60), 2)]
    page.step("scale", 1.5, index, 1.5)
    found = page.browser.execute_async_script(DRAG, values)
    print(
        f"\ndrag: 60 input events 16 ms apart -> {found['shown']} results shown, the "
        f"last {found['afterLast']:.0f} ms after the last event; {stats(found['ms'])}"
    )
    return found


def slice_changes(page: Page, index: int, count: int, other: Path) -> tuple[list, list]:
    """At x2: ArrowUp with the look-ahead idle (warm); then on a volume never seen (no
    features anywhere) PageUp, +5 slices, beyond the look-ahead's 4 (cold)."""
    page.step("scale", 2.0, index, 2.0)
    page.step("slice", 0, 0, 2.0)
    warm, cold = [], []
    for k in range(1, count + 1):
        wait_idle(page.http)
        warm.append(page.step("key", "ArrowUp", k, 2.0))
    page.open(other)
    page.step("slice", 0, 0, 2.0)
    for k in (5, 10):
        wait_idle(page.http)
        cold.append(page.step("key", "PageUp", k, 2.0))
    print(f"\nslice change at x2, look-ahead warm  {stats([w['frameMs'] for w in warm])}")
    print(f"slice change at x2, cold (+5 slices) {stats([c['frameMs'] for c in cold])}")
    return warm, cold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--rounds", type=int, default=3, help="slices swept through all scales")
    parser.add_argument("--slice-changes", type=int, default=8)
    parser.add_argument(
        "--compute",
        choices=("auto", "server", "browser"),
        default="auto",
        help="where Meta-SRGAN runs (the page's Compute menu); browser: WebGL2",
    )
    parser.add_argument("--scales", help="comma-separated scales (default 1.0, 1.1, ..., 4.0)")
    parser.add_argument("--zoom-only", action="store_true", help="skip the drag and slices")
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--zoom-cache-mb",
        type=float,
        help="the server's zoom look-ahead bound (0: off, the cold baseline; default: its own)",
    )
    parser.add_argument(
        "--sweep-wait",
        choices=("idle", "first"),
        default="idle",
        help="before each slice's sweep, wait for the whole look-ahead (idle: warm) or only "
        "for its first zoom stop (first: the look-ahead fills in between the steps)",
    )
    args = parser.parse_args(argv)
    if args.zoom_cache_mb is not None:  # read by the server's process (create_app)
        from metasrgan.viewer.server import ZOOM_CACHE_ENV

        os.environ[ZOOM_CACHE_ENV] = f"{args.zoom_cache_mb:g}"

    import httpx

    rng = random.Random(args.seed)
    scales = [round(1.0 + 0.1 * k, 1) for k in range(31)]
    if args.scales:
        scales = [1.0] + [float(v) for v in args.scales.split(",") if float(v) != 1.0]
    results: dict = {"cpus": os.cpu_count(), "threads": args.threads, "load": os.getloadavg()}
    results.update(zoom_cache_mb=args.zoom_cache_mb, sweep_wait=args.sweep_wait)
    with tempfile.TemporaryDirectory() as tmp:
        volume = make_volume(Path(tmp))
        other = make_volume(Path(tmp), flip=True)
        proc, url = start_server(args)
        browser = start_browser()
        browser.set_script_timeout(300)
        try:
            page = Page(browser, httpx.Client(base_url=url, timeout=120), url)
            page.open(volume)
            print(f"server {url}, volume {page.vol_id}, load average {os.getloadavg()}")
            page.choose("compute", args.compute)
            per_scale = zoom_sweep(page, scales, args.rounds, rng, args.sweep_wait)
            results["zoom"] = {str(s): recs for s, recs in per_scale.items()}
            report_zoom(per_scale)
            stats = page.http.get("/api/stats").json()
            print(f"  server: {json.dumps({k: v for k, v in stats.items() if 'zoom' in k})}")
            print(f"  load average after the sweep {os.getloadavg()}")
            if not args.zoom_only:
                last = 3 + 3 * (args.rounds - 1)
                results["drag"] = drag(page, last)
                warm, cold = slice_changes(page, last, args.slice_changes, other)
                results["slice_warm"], results["slice_cold"] = warm, cold
            print(f"page errors: {browser.execute_script('return window.viewerStats.errors')}")
        finally:
            browser.quit()
            proc.terminate()
            proc.wait(10)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
