"""The zoom look-ahead: prefetched ``zoom.bin`` bodies equal computed ones, are keyed by
everything they depend on, stay within their byte bound and give way to requests."""

from __future__ import annotations

import gzip
import io
import json

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from fixtures.models import viewer_model  # noqa: E402

from metasrgan.samples_path import sample_path  # noqa: E402
from metasrgan.scale import Scale2d  # noqa: E402
from metasrgan.viewer import engine, server, zoomahead  # noqa: E402
from metasrgan.viewer.zoomahead import ZoomAhead, ZoomBytes  # noqa: E402

LOCAL = "http://127.0.0.1:8000"

pytestmark = pytest.mark.usefixtures("one_thread")


def _slab_bytes() -> bytes:
    """A 40 x 48 x 12 crop of the bundled Colin27 slab (small: 30 stops stay quick)."""
    data = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)
    buf = io.BytesIO()
    buf.write(nib.Nifti1Image(data[70:110, 80:128], np.eye(4)).to_bytes())
    return gzip.compress(buf.getvalue())


def _client(**kwargs) -> tuple[TestClient, server.Viewer, str]:
    app = server.create_app(model=viewer_model(), preload_sample=None, **kwargs)
    viewer = app.state.viewer
    c = TestClient(app, base_url=LOCAL, headers={"x-metasrgan-token": viewer.token})
    vol = c.post("/api/volumes?filename=slab.nii.gz", content=_slab_bytes()).json()
    return c, viewer, vol["id"]


@pytest.fixture(scope="module")
def warm():
    """A viewer whose look-ahead has prefetched slice 6's stops (zoomed once at x2)."""
    c, viewer, vol_id = _client(lookahead=1)
    zoom = dict(volume=vol_id, axis="axial", index=6, scale_h="2.00", scale_w="2.00")
    assert c.get("/api/zoom.bin", params=zoom).status_code == 200
    assert viewer.pool.idle(120)
    return c, viewer, zoom


def _zoom_bin(c: TestClient, params: dict) -> tuple[bytes, dict, dict]:
    r = c.get("/api/zoom.bin", params=params)
    assert r.status_code == 200, r.text
    return r.content, json.loads(r.headers["X-Zoom"]), json.loads(r.headers["X-Timings"])


def test_the_look_ahead_prefetches_every_stop_of_the_slice_on_screen(warm):
    _, viewer, _ = warm
    stats = viewer.zoom_ahead.stats()
    assert stats["zoom_prefetched"] == len(zoomahead.STOPS) - 1  # all but x2, on screen
    assert stats["zoom_prefetch_bytes"] <= stats["zoom_prefetch_max_bytes"]


@pytest.mark.parametrize("scale", ["3.70", "1.10", "4.00"])
def test_a_prefetched_zoom_is_byte_for_byte_the_computed_one(warm, scale):
    c, viewer, zoom = warm
    hits = viewer.zoom_ahead.hits
    body, meta, timings = _zoom_bin(c, {**zoom, "scale_h": scale, "scale_w": scale})
    assert meta["from_cache"] is True and viewer.zoom_ahead.hits == hits + 1
    assert {"metasrgan", "features", "bicubic", "request"} <= set(timings)
    fresh_c, fresh, vol_id = _client(lookahead=0)  # no look-ahead at all: computed now
    assert vol_id == zoom["volume"]
    fresh_body, fresh_meta, _ = _zoom_bin(fresh_c, {**zoom, "scale_h": scale, "scale_w": scale})
    assert fresh_meta["from_cache"] is False and fresh.zoom_ahead.stats()["zoom_prefetched"] == 0
    assert body == fresh_body
    assert fresh_meta["scale"] == meta["scale"]


def test_prefetched_keys_name_the_model_volume_axis_slice_scales_and_acquisition(warm):
    c, viewer, zoom = warm
    keys = viewer.zoom_ahead.cache.keys()
    assert keys and all(k[0] == viewer.model_key for k in keys)
    assert {k[1:4] for k in keys} == {(zoom["volume"], "axial", 6)}
    assert all(isinstance(k[4], Scale2d) and k[5] is None for k in keys)  # no acquisition
    other = {
        "another slice": {"index": 5, "scale_h": "3.70", "scale_w": "3.70"},
        "another axis": {"axis": "coronal", "index": 6, "scale_h": "3.70", "scale_w": "3.70"},
        "per axis": {"scale_h": "3.70", "scale_w": "3.60"},
    }
    for what, change in other.items():
        hits = viewer.zoom_ahead.hits
        _, meta, _ = _zoom_bin(c, {**zoom, **change})
        assert viewer.zoom_ahead.hits == hits, what
        assert viewer.pool.idle(120)
    # the JSON endpoint's PNGs are made from the float images: it never takes a body
    assert c.get("/api/zoom", params={**zoom, "scale_h": "2.50"}).json()["from_cache"] is False


def test_the_zoom_cache_evicts_beyond_its_byte_bound():
    ahead = ZoomAhead(max_bytes=1024**2, max_items=64)
    for k in range(10):
        ahead.cache.put(("k", k), ZoomBytes(bytes(300_000), (300, 500)))
    assert ahead.cache.nbytes <= 1024**2
    assert ahead.cache.keys() == [("k", 7), ("k", 8), ("k", 9)]
    assert ahead.get(("k", 0)) is None and ahead.get(("k", 9)) is not None


def test_a_small_bound_keeps_the_nearest_stops_within_it():
    c, viewer, vol_id = _client(lookahead=1, zoom_cache_mb=0.5)
    zoom = dict(volume=vol_id, axis="axial", index=6, scale_h="2.00", scale_w="2.00")
    c.get("/api/zoom.bin", params=zoom)
    assert viewer.pool.idle(120)
    stats = viewer.zoom_ahead.stats()
    assert 0 < stats["zoom_prefetched"] < len(zoomahead.STOPS) - 1
    assert stats["zoom_prefetch_bytes"] <= 0.5 * 1024**2
    near = zoomahead.stops_near(engine.snap_scales(2.0, 2.0))
    keys = viewer.zoom_ahead.cache.keys()
    assert {k[4] for k in keys} == set(near[: len(viewer.zoom_ahead.cache)])


def test_no_zoom_look_ahead_when_turned_off():
    c, viewer, vol_id = _client(lookahead=1, zoom_cache_mb=0)
    c.get("/api/zoom.bin", params=dict(volume=vol_id, axis="axial", index=6, scale=2.0))
    assert viewer.pool.idle(120) and viewer.zoom_ahead is None
    assert "zoom_prefetched" not in c.get("/api/stats").json()


def test_stops_are_nearest_first_and_a_job_gives_way_to_requests():
    near = zoomahead.stops_near(engine.snap_scales(2.0, 2.0))
    assert [float(s.h.value) for s in near[:4]] == [2.1, 1.9, 2.2, 1.8]
    assert len(near) == len(zoomahead.STOPS) - 1 and all(s.symmetric for s in near)
    assert zoomahead.stops_near(engine.snap_scales(2.0, 3.0)) == ()
    assert zoomahead.interleave([1, 2, 3, 4, 5, 6], ["a", "b"], every=2) == [
        1, 2, "a", 3, 4, "b", 5, 6,
    ]  # fmt: skip

    ahead = ZoomAhead(max_bytes=1024**2)

    def compute(cancelled):
        if cancelled():
            raise engine.Cancelled
        return ZoomBytes(b"x", (1, 1))

    job = ahead.job("key", compute, skip=lambda: False)
    with pytest.raises(engine.Cancelled):
        job(lambda: True)  # a request is in flight: nothing computed, tried again later
    assert "key" not in ahead.cache and ahead.get("key") is None
    job(lambda: False)
    assert ahead.get("key").body == b"x"


def test_moving_to_another_slice_replaces_the_queued_stops():
    c, viewer, vol_id = _client(lookahead=1)
    zoom = dict(volume=vol_id, axis="axial", index=6, scale_h="2.00", scale_w="2.00")
    c.get("/api/zoom.bin", params=zoom)
    c.get("/api/zoom.bin", params={**zoom, "index": 8})
    queued = [k for k in viewer.pool.queued_lookahead() if k[0] == "zoom"]
    assert queued and all(k[2:5] == (vol_id, "axial", 8) for k in queued)
    assert viewer.pool.idle(120)
    keys = viewer.zoom_ahead.cache.keys()
    assert all(k[3] in (6, 8) for k in keys)


def test_a_view_from_the_page_cache_moves_the_look_ahead_without_computing():
    c, viewer, vol_id = _client(lookahead=1)
    zoom = dict(volume=vol_id, axis="axial", index=6, scale_h="2.00", scale_w="2.00")
    c.get("/api/zoom.bin", params=zoom)
    computed = viewer.counts["computed"]
    r = c.get("/api/lookahead", params={**zoom, "index": 9, "client": "page"})
    assert r.status_code == 204 and viewer.counts["computed"] == computed
    queued = [k for k in viewer.pool.queued_lookahead() if k[0] == "zoom"]
    assert queued and all(k[2:5] == (vol_id, "axial", 9) for k in queued)
    assert viewer.pool.idle(120)
    body, meta, _ = _zoom_bin(c, {**zoom, "index": 9, "scale_h": "3.30", "scale_w": "3.30"})
    assert meta["from_cache"] is True and viewer.counts["computed"] == computed


def test_pools_still_running_at_exit_stop_their_look_ahead_first():
    """A test client used without ``with`` never ends the app's lifespan: the exit hook
    stops its look-ahead thread, which would otherwise die inside torch at exit."""
    import threading
    import time

    from metasrgan.viewer import jobs

    pool = jobs.ComputePool(workers=1)
    started = threading.Event()

    def job(cancelled):
        started.set()
        while not cancelled():
            time.sleep(0.01)

    pool.look_ahead([("key", job)])
    assert started.wait(10) and pool in jobs._OPEN
    jobs._close_open_pools()
    assert not pool._thread.is_alive() and pool not in jobs._OPEN
