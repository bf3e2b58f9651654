"""The viewer's zoom engine and HTTP API, in-process (no browser, no sockets)."""

from __future__ import annotations

import base64
import io
import threading
import time
from fractions import Fraction

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from metasrgan.inference import upscale_tensor  # noqa: E402
from metasrgan.registry import make  # noqa: E402
from metasrgan.scale import Scale2d  # noqa: E402
from metasrgan.viewer import engine, server  # noqa: E402
from metasrgan.viewer.cache import LRUCache  # noqa: E402
from metasrgan.viewer.sequencing import RequestSequencer  # noqa: E402
from metasrgan.viewer.volumes import load_sample, load_volume  # noqa: E402

SAMPLE = "sample-colin27_val"  # axial slices 213 x 181 after reorientation to RAS


pytestmark = pytest.mark.usefixtures("one_thread")  # many small operations


def _random_model(skip: str = "bicubic", norm: str = "none") -> torch.nn.Module:
    """An untrained Meta-SRGAN whose upscaler is not zero, so that every path shows."""
    torch.manual_seed(1)
    model = make({"name": "meta-srgan", "args": {"skip": skip, "norm": norm}})
    with torch.no_grad():
        for p in model.upscale.parameters():
            p.normal_(0.0, 0.05)
    return model.eval()


LOCAL = "http://127.0.0.1:8000"


def _local(app, **kwargs) -> TestClient:
    """A client on the loopback host the viewer answers, with the page's upload token."""
    token = app.state.viewer.token
    return TestClient(app, base_url=LOCAL, headers={"x-metasrgan-token": token}, **kwargs)


@pytest.fixture(scope="module")
def app():
    return server.create_app(model=_random_model(), lookahead=0)


@pytest.fixture(scope="module")
def client(app):
    with _local(app) as c:
        yield c


def _png(data_url_or_bytes) -> np.ndarray:
    raw = data_url_or_bytes
    if isinstance(raw, str):
        raw = base64.b64decode(raw.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)))


def _zoom(client, scale, seq=0, client_id="test", index=6, axis="axial", volume=SAMPLE):
    params = dict(volume=volume, axis=axis, index=index, scale=scale, client=client_id, seq=seq)
    return client.get("/api/zoom", params=params)


# ---------------------------------------------------------------- engine


@pytest.mark.parametrize("skip,norm", [("bicubic", "none"), ("none", "batch")])
def test_zoom_from_cached_features_equals_the_whole_model(skip, norm):
    model = _random_model(skip, norm)
    unit = load_sample("colin27_val").unit_slice("axial", 6)[80:128, 60:100]
    scale = Scale2d.of(Fraction(7, 3))
    x = torch.from_numpy(unit)[None, None]
    features = engine.extract_features(model, x)
    result = engine.zoom(model, unit, scale)
    again = engine.zoom(model, unit, scale, features)  # from the cached features
    whole = upscale_tensor(model, x, scale)
    np.testing.assert_allclose(result.metasrgan, whole[0, 0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(again.metasrgan, result.metasrgan)
    assert result.metasrgan.shape == (112, 93) and not result.features_cached
    assert again.features_cached and again.features_ms == 0.0


def test_scales_snap_to_small_denominators_and_stay_in_range():
    assert engine.snap_scale(1.0) == 1
    assert engine.snap_scale(2.5) == Fraction(5, 2)
    assert engine.snap_scale(2.37) == Fraction(19, 8)
    for trained in (1.1, 1.7, 2.3, 3.9):
        assert engine.snap_scale(trained) == Fraction(str(trained))
    for s in np.linspace(1.0, 4.0, 301):
        snapped = engine.snap_scale(float(s))
        assert snapped.denominator <= engine.MAX_DENOMINATOR and abs(snapped - s) <= 0.05 + 1e-9
    for bad in (0.9, 4.01, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            engine.snap_scale(bad, engine.MAX_SCALE)
    assert engine.snap_scale(5.0) == 5  # one axis may reach x6 (the "to isotropic" preset)
    with pytest.raises(ValueError, match="between 1 and 6"):
        engine.snap_scale(6.5)


def test_scale_one_returns_the_slice_itself():
    unit = np.random.default_rng(0).random((20, 30), dtype=np.float32)
    result = engine.zoom(_random_model(), unit, Scale2d.of(1))
    np.testing.assert_array_equal(result.metasrgan, unit)
    np.testing.assert_array_equal(result.bicubic, unit)


# ---------------------------------------------------------------- small parts


def test_lru_cache_bounds_count_and_bytes_but_keeps_the_newest():
    cache = LRUCache(3, max_bytes=10, sizeof=len)
    for key in "abc":
        cache.put(key, "xx")
    cache.get("a")  # a is now the most recent
    cache.put("d", "xx")
    assert sorted(cache.keys()) == ["a", "c", "d"]  # b, the least recently used, went
    cache.put("big", "x" * 50)  # over the byte budget alone: still kept
    assert cache.keys() == ["big"]


def test_sequencer_drops_requests_older_than_the_newest():
    seq = RequestSequencer()
    with seq.turn("a", 1) as current:
        assert current
    with seq.turn("a", 5):
        pass
    with seq.turn("a", 3) as current:
        assert not current
    with seq.turn("b", 1) as current:  # clients are independent
        assert current
    assert seq.superseded == 1 and seq.latest("a") == 5


def test_volumes_are_reoriented_to_ras(tmp_path):
    data = np.zeros((6, 5, 4), np.float32)
    data[0, 0, 0] = 100.0
    data[1:5, 1:4, 1:3] = 10.0
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # first two axes run right-to-left, front-to-back
    nib.save(nib.Nifti1Image(data, lps), tmp_path / "lps.nii.gz")
    volume = load_volume(tmp_path / "lps.nii.gz")
    assert volume.data.shape == (6, 5, 4)
    assert volume.data[5, 4, 0] == 100.0  # the marker moved to the far corner
    assert volume.slice_counts() == {"sagittal": 6, "coronal": 5, "axial": 4}
    assert volume.slice("axial", 0).shape == (5, 6)  # rows: anterior at the top


# ---------------------------------------------------------------- API


def test_info_lists_samples_and_limits(client):
    info = client.get("/api/info").json()
    assert "colin27_val" in info["samples"] and info["default_sample"] == "colin27_val"
    assert info["limits"]["scale_min"] == 1.0 and info["limits"]["scale_max"] == 4.0
    assert info["model"]["feature_cache"] is True


def test_an_untrained_model_is_flagged_plainly(monkeypatch):
    import metasrgan.inference as inference

    monkeypatch.setattr(inference, "shipped_model_path", lambda: None)
    app = server.create_app(None, preload_sample=None)
    info = _local(app).get("/api/info").json()["model"]
    assert info["untrained"] is True and "UNTRAINED" in info["warning"]


def test_the_page_and_its_assets_are_served_and_work_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="scale"' in page.text
    assert 'min="1" max="4"' in page.text
    scripts = [f"/static/{m}.js" for m in ("app", "state", "zoom", "render", "gpu")]
    for asset in (*scripts, "/static/style.css"):
        assert client.get(asset).status_code == 200
    for text in (page.text, *(client.get(s).text for s in scripts)):
        assert "https://" not in text and "http://" not in text  # no CDN, nothing remote


def test_the_bundled_sample_is_selected_with_slice_counts(client):
    vol = client.post("/api/samples/colin27_val").json()
    assert vol["id"] == SAMPLE
    assert vol["slices"] == {"sagittal": 181, "coronal": 213, "axial": 12}
    assert vol["default"] == {"axis": "axial", "index": 6}
    assert vol["slice_shapes"]["axial"] == [213, 181]
    assert client.get(f"/api/volumes/{SAMPLE}").json()["shape"] == [181, 213, 12]
    bad = client.post("/api/samples/nope")
    assert bad.status_code == 400 and "no bundled sample" in bad.json()["error"]


def test_zoom_returns_both_images_the_difference_and_timings(client):
    response = _zoom(client, 2.5)
    assert response.status_code == 200
    body = response.json()
    assert body["scale"] == "5/2" and body["input_shape"] == [213, 181]
    assert body["output_shape"] == [532, 452]  # floor(213 * 2.5), floor(181 * 2.5)
    for kind in ("metasrgan", "bicubic"):
        assert _png(body["images"][kind]).shape == (532, 452)
    assert _png(body["images"]["difference"]).shape == (532, 452, 3)
    assert body["difference"]["max_abs"] > 0
    times = body["timings_ms"]
    assert times["metasrgan"] > 0 and times["bicubic"] > 0 and "features_cached" in times
    # the same zoom again comes from the result cache; a new scale reuses the features
    assert _zoom(client, 2.5).json()["from_cache"] is True
    other = _zoom(client, 2.37).json()
    assert other["scale"] == "19/8" and other["timings_ms"]["features_cached"] is True
    assert other["output_shape"] == [505, 429]  # floor(213 * 19 / 8), floor(181 * 19 / 8)


def test_scale_one_serves_the_slice_itself(client):
    body = _zoom(client, 1.0).json()
    assert body["output_shape"] == [213, 181]
    lr = _png(client.get(f"/api/volumes/{SAMPLE}/slice.png?axis=axial&index=6").content)
    np.testing.assert_array_equal(_png(body["images"]["metasrgan"]), lr)
    np.testing.assert_array_equal(_png(body["images"]["bicubic"]), lr)


def test_zoom_png_endpoint_gives_timing_headers(client):
    params = dict(volume=SAMPLE, axis="axial", index=6, scale=3.0)
    response = client.get("/api/zoom/bicubic.png", params=params)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-scale"] == "3/1" and float(response.headers["x-compute-ms"]) > 0
    assert _png(response.content).shape == (639, 543)
    assert client.get("/api/zoom/other.png", params=params).status_code == 404


@pytest.mark.parametrize(
    "params,status,needle",
    [
        ({"scale": 0.5}, 400, "between 1 and 4"),
        ({"scale": 4.5}, 400, "between 1 and 4"),
        ({"axis": "oblique"}, 400, "axis must be one of"),
        ({"index": 12}, 400, "out of range 0-11"),
        ({"volume": "upload-missing"}, 404, "load the scan again"),
    ],
)
def test_bad_zoom_requests_get_clear_json_errors(client, params, status, needle):
    query = {"volume": SAMPLE, "axis": "axial", "index": 6, "scale": 2.0, **params}
    response = client.get("/api/zoom", params=query)
    assert response.status_code == status and needle in response.json()["error"]


def test_uploads_are_parsed_in_a_temporary_folder_only(client, tmp_path, monkeypatch):
    import tempfile

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.chdir(tmp_path)
    crop = np.asanyarray(nib.load(load_sample_path()).dataobj)[40:100, 50:110, 3:6]
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(crop.astype(np.float32), np.eye(4)), path)
    body = path.read_bytes()
    path.unlink()
    response = client.post("/api/volumes?filename=../../etc/scan.nii.gz", content=body)
    assert response.status_code == 200, response.text
    vol = response.json()
    assert vol["name"] == "scan.nii.gz" and vol["source"] == "upload"
    assert vol["slices"] == {"sagittal": 60, "coronal": 60, "axial": 3}
    assert _zoom(client, 2.0, volume=vol["id"], index=1).json()["output_shape"] == [120, 120]
    assert list(spool.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]


def test_a_png_upload_is_one_slice(client):
    pixels = (np.arange(40 * 50).reshape(40, 50) % 251).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    vol = client.post("/api/volumes?filename=slice.png", content=buf.getvalue()).json()
    assert vol["slices"] == {"axial": 1} and vol["slice_shapes"]["axial"] == [40, 50]
    assert _zoom(client, 1.5, volume=vol["id"], index=0).json()["output_shape"] == [60, 75]


@pytest.mark.parametrize(
    "filename,content,needle",
    [
        ("broken.nii.gz", b"this is not a scan" * 20, "broken.nii.gz: "),
        ("notes.txt", b"hello", "unsupported file type"),
        ("empty.nii", b"", "empty"),
        ("flat.png", "flat", "constant"),
    ],
)
def test_bad_uploads_get_a_clear_message_and_the_server_carries_on(
    client, filename, content, needle
):
    if content == "flat":
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(buf, format="PNG")
        content = buf.getvalue()
    response = client.post(f"/api/volumes?filename={filename}", content=content)
    message = response.json()["error"]
    assert response.status_code == 400 and needle in message
    assert "metasrgan-upload-" not in message  # the user's name, not the server's copy
    assert client.get("/api/info").status_code == 200
    assert _zoom(client, 2.0).status_code == 200


def test_uploads_over_the_limit_are_refused():
    app = server.create_app(model=_random_model(), max_upload_mb=0.01, preload_sample=None)
    with _local(app) as c:
        response = c.post("/api/volumes?filename=big.nii", content=b"\0" * 20_000)
        assert response.status_code == 413 and "upload limit" in response.json()["error"]


# ---------------------------------------------------------------- stale work never queues


def _wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the server")
        time.sleep(0.01)


def test_a_superseded_request_is_not_computed(app, client, monkeypatch):
    viewer = app.state.viewer
    computed, entered, release = [], threading.Event(), threading.Event()
    original = viewer._compute

    def slow_compute(req):
        computed.append(req.seq)
        entered.set()
        release.wait(20)
        return original(req)

    assert _zoom(client, 2.0, client_id="warm-up", index=4).status_code == 200  # features cached
    monkeypatch.setattr(viewer, "_compute", slow_compute)
    statuses = {}

    def ask(seq, scale):
        statuses[seq] = _zoom(client, scale, seq=seq, client_id="slider", index=4).status_code

    first = threading.Thread(target=ask, args=(1, 1.6))
    first.start()
    assert entered.wait(20)
    later = [threading.Thread(target=ask, args=(s, 1.6 + 0.1 * s)) for s in (2, 3)]
    for t in later:
        t.start()
    _wait_for(lambda: viewer.sequencer.latest("slider") == 3)
    release.set()
    for t in [first, *later]:
        t.join(30)
    assert statuses == {1: 200, 2: 409, 3: 200}
    assert computed == [1, 3]  # seq 2 went stale while waiting and never ran


def test_a_request_superseded_during_its_features_stops_there(app, client, monkeypatch):
    viewer = app.state.viewer
    calls, entered, release = [], threading.Event(), threading.Event()
    original = engine.extract_features

    def slow_features(model, x, cancelled=lambda: False, **kwargs):
        calls.append(1)
        entered.set()
        release.wait(20)
        return original(model, x, cancelled, **kwargs)

    monkeypatch.setattr(server.engine, "extract_features", slow_features)
    before = dict(viewer.counts)
    statuses = {}

    def ask(seq, scale):
        statuses[seq] = _zoom(client, scale, seq=seq, client_id="drag", index=2).status_code

    first = threading.Thread(target=ask, args=(10, 2.0))
    first.start()
    assert entered.wait(20)
    second = threading.Thread(target=ask, args=(11, 3.0))
    second.start()
    _wait_for(lambda: viewer.sequencer.latest("drag") == 11)
    release.set()
    first.join(30)
    second.join(30)
    assert statuses == {10: 409, 11: 200}
    assert len(calls) == 1  # the newer request reused the features the stale one made
    assert viewer.counts["dropped_after_features"] == before["dropped_after_features"] + 1


def load_sample_path():
    from importlib import resources

    return str(resources.files("metasrgan") / "samples" / "colin27_val.nii.gz")


# ---------------------------------------------------------------- the command


def test_serve_binds_loopback_by_default_and_reports_a_busy_port(capsys):
    import argparse
    import socket

    from metasrgan.cli import main
    from metasrgan.commands import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args([])
    assert args.host == "127.0.0.1" and args.port == 8000 and not args.open
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
