"""The viewer refuses what it should, before any work, and one client cannot stall the others.

Host and Origin checks, the token or JSON rule for state-changing requests, uploads sized
from their headers (gzip bombs), broken headers as 4xx JSON, the bounded compute pool,
per-request size limits, cancellation, the look-ahead, and the NIfTI slice's geometry.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
import time

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from fixtures.models import viewer_model  # noqa: E402

from metasrgan.registry import make  # noqa: E402
from metasrgan.samples_path import sample_path  # noqa: E402
from metasrgan.viewer import engine, server  # noqa: E402
from metasrgan.viewer.server import UploadLimits  # noqa: E402

LOCAL = "http://127.0.0.1:8000"
SAMPLE = "sample-colin27_val"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def app():
    limits = UploadLimits(max_bytes=8 * 1024**2, max_voxels=4 * 1024**2)
    return server.create_app(model=viewer_model(), limits=limits, lookahead=0)


@pytest.fixture(scope="module")
def client(app):
    token = app.state.viewer.token
    with TestClient(app, base_url=LOCAL, headers={"x-metasrgan-token": token}) as c:
        yield c


def _nifti_bytes(data, affine, compress=True, **header) -> bytes:
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    for key, value in header.items():
        img.header[key] = value
    raw = img.to_bytes()
    return gzip.compress(raw) if compress else raw


def _upload(client, name, content):
    return client.post(f"/api/volumes?filename={name}", content=content)


# ---------------------------------------------------------------- who may ask


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"])
def test_loopback_hosts_are_answered(app, host):
    response = TestClient(app, base_url=LOCAL).get("/api/info", headers={"host": host})
    assert response.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "192.168.1.5:8000", ""])
def test_other_host_names_are_refused_dns_rebinding(app, host):
    response = TestClient(app, base_url=LOCAL).get("/api/info", headers={"host": host})
    assert response.status_code == 403 and "is not allowed" in response.json()["error"]


def test_allowed_hosts_can_be_extended():
    app = server.create_app(
        model=viewer_model(), preload_sample=None, allowed_hosts=("127.0.0.1", "viewer.lan")
    )
    c = TestClient(app, base_url="http://viewer.lan:8000")
    assert c.get("/api/info").status_code == 200


def test_cross_origin_requests_are_refused_even_simple_ones(app):
    c = TestClient(app, base_url=LOCAL)
    evil = {"origin": "http://evil.example"}
    assert c.get("/api/info", headers=evil).status_code == 403
    post = c.post("/api/samples/colin27_val", headers={**evil, "content-type": "text/plain"})
    assert post.status_code == 403 and "other sites" in post.json()["error"]
    assert c.get("/api/info", headers={"origin": "null"}).status_code == 403
    assert c.get("/api/info", headers={"origin": LOCAL}).status_code == 200  # the page itself
    # an <img> or link on another site sends no Origin, but its Sec-Fetch-Site says so
    for site in ("cross-site", "same-site"):
        assert c.get("/api/stats", headers={"sec-fetch-site": site}).status_code == 403
    for site in ("same-origin", "none"):  # the page's own requests; a URL typed by the user
        assert c.get("/api/stats", headers={"sec-fetch-site": site}).status_code == 200


def test_state_changing_requests_need_json_or_the_token(app):
    c = TestClient(app, base_url=LOCAL)
    for headers in ({"content-type": "text/plain"}, {}, {"x-metasrgan-token": "guess"}):
        response = c.post("/api/samples/colin27_val", content=b"{}", headers=headers)
        assert response.status_code == 403 and "application/json" in response.json()["error"]
    assert c.post("/api/samples/colin27_val", json={}).status_code == 200
    token = c.get("/api/info").json()["token"]
    ok = c.post("/api/samples/colin27_val", headers={"x-metasrgan-token": token})
    assert ok.status_code == 200


# ---------------------------------------------------------------- uploads


def gzip_bomb(side: int = 512) -> bytes:
    """0.5 MB of gzip that declares (and holds) ``side``^3 float32 voxels: 512 MiB.  One
    member of 16 MiB of zeros repeated: a multi-member gzip is one valid stream."""
    header = nib.Nifti1Header()
    header.set_data_shape((side, side, side))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    zeros = gzip.compress(bytes(16 * 1024**2), compresslevel=9)
    head = gzip.compress(header.binaryblock + b"\0" * 4)
    return head + zeros * (side**3 * 4 // (16 * 1024**2))


def test_a_gzip_bomb_is_refused_from_its_header(client):
    body = gzip_bomb()
    assert len(body) < 1024**2
    with gzip.open(io.BytesIO(body)) as check:  # it really is 512 MiB once inflated
        assert len(check.read(600)) == 600
    response = _upload(client, "bomb.nii.gz", body)
    assert response.status_code == 413, response.text
    message = response.json()["error"]
    assert message.startswith("bomb.nii.gz: ") and "134,217,728" in message.replace(" ", "")


def test_trailing_data_beyond_the_declared_voxels_is_never_inflated(client):
    data = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)[:64, :64, :4]
    raw = _nifti_bytes(data, np.eye(4), compress=False) + bytes(64 * 1024**2)
    response = _upload(client, "padded.nii.gz", gzip.compress(raw, compresslevel=9))
    assert response.status_code == 200, response.text
    assert response.json()["shape"] == [64, 64, 4]


def _patched_nifti(**fields) -> bytes:
    """A valid 16x16x4 NIfTI whose header fields are then overwritten byte for byte (nibabel
    itself refuses to write broken geometry)."""
    data = np.random.default_rng(0).random((16, 16, 4)).astype(np.float32)
    raw = nib.Nifti1Image(data, np.eye(4)).to_bytes()
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=False)
    for key, value in fields.items():
        header[key] = value
    return gzip.compress(header.binaryblock + raw[348:])


ZERO = np.zeros(4)
BROKEN = {
    "nan pixdim": dict(pixdim=[1, np.nan, np.nan, np.nan, 1, 1, 1, 1], qform_code=0, sform_code=0),
    "zero pixdim": dict(pixdim=[1, 0, 0, 0, 1, 1, 1, 1], qform_code=0, sform_code=0),
    "zero affine": dict(qform_code=0, sform_code=1, srow_x=ZERO, srow_y=ZERO, srow_z=ZERO),
    "singular affine": dict(
        qform_code=0, sform_code=1, srow_x=[1, 0, 0, 0], srow_y=[0, 1, 0, 0], srow_z=[1, 1, 0, 0]
    ),
    "nan affine": dict(qform_code=0, sform_code=1, srow_x=[1, 0, 0, np.nan]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_geometry_is_a_400_with_a_message_never_a_500(client, case):
    response = _upload(client, "broken.nii.gz", _patched_nifti(**BROKEN[case]))
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert message.startswith("broken.nii.gz: ")
    assert any(word in message for word in ("affine", "voxel size", "pixdim", "singular")), message


def test_the_upload_limit_counts_received_bytes():
    app = server.create_app(model=viewer_model(), preload_sample=None, max_upload_mb=0.01)
    c = TestClient(app, base_url=LOCAL, headers={"x-metasrgan-token": app.state.viewer.token})
    response = c.post("/api/volumes?filename=big.nii", content=b"\0" * 20_000)
    assert response.status_code == 413 and "upload limit" in response.json()["error"]


# ---------------------------------------------------------------- every error is JSON


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("get", "/api/nothing-here", 404),
        ("delete", "/api/info", 405),
        ("get", "/api/zoom?volume=x", 422),
        ("get", "/api/zoom?volume=x&axis=axial&index=nope", 422),
        ("get", f"/api/zoom?volume={SAMPLE}&axis=axial&index=1&scale=nan", 400),
        ("get", "/api/zoom?volume=x&axis=axial&index=1&seq=-1", 422),
        ("get", f"/api/zoom?volume={SAMPLE}&axis=axial&index=1&scale=inf", 400),
        ("get", f"/api/zoom?volume={SAMPLE}&axis=axial&index=1&acquisition=kspace", 400),
        ("get", f"/api/zoom/nope.png?volume={SAMPLE}&axis=axial&index=1", 404),
        ("get", f"/api/volumes/{SAMPLE}/slice.bin?axis=axial&index=99", 400),
    ],
)
def test_errors_are_json_with_a_message(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"], str) and response.json()["error"]


def test_a_zoom_too_large_for_one_request_is_refused_before_work(client):
    from PIL import Image

    buf = io.BytesIO()
    pixels = (np.arange(1024 * 1024).reshape(1024, 1024) % 251).astype(np.uint8)
    Image.fromarray(pixels).save(buf, format="PNG")
    vol = _upload(client, "big.png", buf.getvalue()).json()
    computed = client.get("/api/stats").json()["computed"]
    params = dict(volume=vol["id"], axis="axial", index=0, scale_h=6, scale_w=6)
    response = client.get("/api/zoom.bin", params=params)
    assert response.status_code == 413 and "pixels one request" in response.json()["error"]
    assert client.get("/api/stats").json()["computed"] == computed


# ---------------------------------------------------------------- one client cannot block


def test_a_long_zoom_of_one_client_leaves_room_for_another(app, client, monkeypatch):
    viewer = app.state.viewer
    entered, release = threading.Event(), threading.Event()
    original = engine.zoom

    def zoom(model, unit, scale, *args):
        if scale.h.p == 37:  # the long one
            entered.set()
            release.wait(30)
        return original(model, unit, scale, *args)

    monkeypatch.setattr(server.engine, "zoom", zoom)
    statuses = {}

    def long_zoom():
        params = dict(volume=SAMPLE, axis="axial", index=3, scale=3.7, client="heavy")
        statuses["long"] = client.get("/api/zoom.bin", params=params).status_code

    thread = threading.Thread(target=long_zoom)
    thread.start()
    try:
        assert entered.wait(30)
        params = dict(volume=SAMPLE, axis="axial", index=3, scale=1.5, client="light")
        t0 = time.monotonic()
        small = client.get("/api/zoom.bin", params=params)
        assert small.status_code == 200 and not release.is_set()  # done while the long one runs
        assert time.monotonic() - t0 < 30
    finally:
        release.set()
        thread.join(30)
    assert statuses == {"long": 200} and viewer.pool.pending == 0


def test_too_many_waiting_computations_get_503_not_a_queue(app, client, monkeypatch):
    viewer = app.state.viewer
    entered, release = threading.Event(), threading.Event()
    original = engine.zoom

    def zoom(*args, **kwargs):
        entered.set()
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(server.engine, "zoom", zoom)
    monkeypatch.setattr(viewer.pool, "max_pending", 1)
    statuses = {}

    def first():
        params = dict(volume=SAMPLE, axis="axial", index=2, scale=1.7, client="one")
        statuses["first"] = client.get("/api/zoom.bin", params=params).status_code

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert entered.wait(30)
        params = dict(volume=SAMPLE, axis="axial", index=2, scale=1.9, client="two")
        busy = client.get("/api/zoom.bin", params=params)
        assert busy.status_code == 503 and "busy" in busy.json()["error"]
    finally:
        release.set()
        thread.join(30)
    assert statuses == {"first": 200}


def test_features_in_bands_are_exact_and_stop_when_cancelled():
    model = viewer_model()
    data = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)
    unit = np.clip(data[60:124, :, 6] / data.max(), 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(unit.T))[None, None]  # 213 rows, 64 columns
    whole = model.extract_features(x)
    banded = engine.extract_features(model, x, band_rows=40)
    torch.testing.assert_close(banded, whole, atol=1e-5, rtol=1e-5)
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(engine.Cancelled):
        engine.extract_features(model, x, cancelled, band_rows=40)
    assert len(calls) == 3  # stopped after two of six bands


def test_look_ahead_computes_the_neighbouring_slices_in_idle_time():
    app = server.create_app(model=viewer_model(), lookahead=2, preload_sample=None)
    viewer = app.state.viewer
    c = TestClient(app, base_url=LOCAL, headers={"x-metasrgan-token": viewer.token})
    data = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)
    vol = _upload(c, "slab.nii.gz", _nifti_bytes(data[60:124, 70:134], np.eye(4))).json()
    zoom = dict(volume=vol["id"], axis="axial", index=6, scale=2.0)
    assert c.get("/api/zoom", params=zoom).status_code == 200
    assert viewer.pool.idle(60)
    for index in (5, 7, 4, 8):
        assert (vol["id"], "axial", index) in viewer.features
    body = c.get("/api/zoom", params={**zoom, "index": 7, "scale": 2.5})
    assert body.json()["timings_ms"]["features_cached"] is True
    assert viewer.pool.idle(60)
    assert (vol["id"], "axial", 9) in viewer.features  # moving up: the next one is ready
    assert (vol["id"], "axial", 10) not in viewer.features  # two ahead, no more
    assert c.get("/api/stats").json()["lookahead_done"] >= 5


# ---------------------------------------------------------------- the slice download


def test_a_downloaded_slice_lands_on_the_scan_it_came_from(client):
    rng = np.random.default_rng(3)
    data = (rng.random((20, 24, 6)) * 100 + 1).astype(np.float32)
    lps = np.array([[-1.5, 0, 0, 30], [0, -1.0, 0, 20], [0, 0, 3.0, -10], [0, 0, 0, 1]])
    vol = _upload(client, "lps.nii.gz", _nifti_bytes(data, lps)).json()
    assert vol["views"]["coronal"]["spacing"] == [3.0, 1.5]  # rows: z, columns: x
    assert vol["views"]["axial"]["labels"] == {"top": "A", "bottom": "P", "left": "L", "right": "R"}
    params = dict(volume=vol["id"], axis="coronal", index=7, scale=1.0)
    response = client.get("/api/zoom/metasrgan.nii.gz", params=params)
    assert response.status_code == 200
    assert "lps_coronal7_x1-1_metasrgan.nii.gz" in response.headers["content-disposition"]
    out = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    low, high = vol["intensity"]["low"], vol["intensity"]["high"]
    expected = np.clip(data, low, high)
    values = np.asarray(out.dataobj)
    to_input = np.linalg.inv(lps) @ out.affine
    for a in range(values.shape[0]):
        for c in range(values.shape[2]):
            i, j, k = np.rint(to_input @ [a, 0, c, 1])[:3].astype(int)
            assert values[a, 0, c] == pytest.approx(expected[i, j, k], rel=1e-3, abs=1e-2)
    # zoomed x2 in-plane: half the voxel size, same field of view (TorchIO's rule)
    params["scale"] = 2.0
    out2 = nib.Nifti1Image.from_bytes(
        gzip.decompress(client.get("/api/zoom/bicubic.nii.gz", params=params).content)
    )
    assert out2.shape == (40, 1, 12)
    np.testing.assert_allclose(out2.header.get_zooms(), (0.75, 1.0, 1.5))
    corner = out.affine @ [-0.5, 0, -0.5, 1]  # the outer edge of the first voxel
    np.testing.assert_allclose(out2.affine @ [-0.5, 0, -0.5, 1], corner, atol=1e-9)


def test_the_whole_volume_download_is_the_library_api_applied_to_the_scan(app, client):
    from metasrgan.api import upscale

    rng = np.random.default_rng(5)
    data = (rng.random((20, 24, 4)) * 100 + 1).astype(np.float32)
    thick = np.diag([1.0, 1.0, 5.0, 1.0])
    vol = _upload(client, "thick.nii.gz", _nifti_bytes(data, thick)).json()
    # the coronal view of 1 x 1 x 5 mm voxels, zoomed x5 down and x1 across: 1 mm isotropic
    params = dict(axis="coronal", scale_h=5, scale_w=1)
    response = client.get(f"/api/volumes/{vol['id']}/upscaled.nii.gz", params=params)
    assert response.status_code == 200, response.text
    assert 'filename="thick_metasrgan.nii.gz"' in response.headers["content-disposition"]
    out = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    assert out.shape == (20, 24, 20)
    np.testing.assert_allclose(out.header.get_zooms(), (1.0, 1.0, 1.0))
    direct = upscale(
        nib.Nifti1Image(data, thick),
        spacing=(1.0, 1.0, 1.0),
        axes=(0, 2),
        model=app.state.viewer.model,
    )
    np.testing.assert_allclose(np.asarray(out.dataobj), direct.get_fdata(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out.affine, direct.affine)
    bad = client.get(f"/api/volumes/{vol['id']}/upscaled.nii.gz", params={**params, "scale_h": 9})
    assert bad.status_code == 400 and "between 1 and 6" in bad.json()["error"]


def test_a_4d_scan_shows_its_first_volume_with_three_voxel_sizes(client):
    data = np.random.default_rng(6).random((12, 10, 5, 3)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.2, 1.0]))
    img.header.set_zooms((2.0, 2.0, 2.2, 2000.0))  # TR in ms on the fourth axis
    vol = _upload(client, "bold.nii.gz", gzip.compress(img.to_bytes())).json()
    assert vol["shape"] == [12, 10, 5] and vol["spacing"] == [2.0, 2.0, 2.2]
    assert vol["views"]["sagittal"]["spacing"] == [2.2, 2.0]
    assert vol["notes"] == ["4D scan with 3 volumes: showing the first"]


def _reference_meta_upscale(features, kernels, meta, skip, out_shape):
    """What gpu.js computes, in numpy: output (i, j) reads the 3x3 neighbourhood of input
    (floor(i*q_h/p_h), floor(j*q_w/p_w)) with the kernel of phase (i mod p_h, j mod p_w)."""
    layers, rows, cols, _ = features.shape
    feats = np.pad(features.transpose(1, 2, 0, 3).reshape(rows, cols, -1), ((1, 1), (1, 1), (0, 0)))
    i, j = np.meshgrid(np.arange(out_shape[0]), np.arange(out_shape[1]), indexing="ij")
    src_r, src_c = i * meta["q_h"] // meta["p_h"], j * meta["q_w"] // meta["p_w"]
    phase = (i % meta["p_h"]) * meta["p_w"] + (j % meta["p_w"])
    acc = np.zeros(out_shape)
    for tap in range(9):
        dy, dx = divmod(tap, 3)
        acc += np.einsum("ijc,ijc->ij", feats[src_r + dy, src_c + dx], kernels[phase, tap])
    base = skip if meta["skip"] == "image" else meta["mean"]
    return np.clip(base + acc * meta["std"], 0, 1)


@pytest.mark.parametrize(
    "args,acquisition",
    [
        ({"skip": "bicubic", "norm": "none"}, None),
        ({"skip": "none", "norm": "batch"}, None),
        ({"skip": "acquisition", "acquisitions": ["kspace", "bicubic"]}, "kspace"),
    ],
)
def test_the_browser_path_data_reproduce_the_servers_zoom(args, acquisition):
    """The features, kernels and skip the page gets, combined as gpu.js does, give the
    server's zoom: for every skip (none, bicubic, sinc) and a conditioned model."""
    torch.manual_seed(7)
    model = make({"name": "meta-srgan", "args": args})
    with torch.no_grad():
        for p in model.upscale.parameters():
            p.normal_(0.0, 0.05)
    app = server.create_app(model=model.eval(), lookahead=0)
    c = TestClient(app, base_url=LOCAL)
    where = dict(axis="axial", index=6)
    zoom = dict(volume=SAMPLE, **where, scale_h=2.3, scale_w=1.5)
    if acquisition:
        zoom["acquisition"] = acquisition
    f = c.get(f"/api/volumes/{SAMPLE}/features.bin", params=where)
    rows, cols, channels = map(int, f.headers["x-shape"].split(","))
    features = (
        np.frombuffer(f.content, "<f2").astype(np.float64).reshape(channels // 4, rows, cols, 4)
    )
    k = c.get(
        "/api/kernels.bin", params={"scale_h": 2.3, "scale_w": 1.5, "acquisition": acquisition}
    )
    meta = json.loads(k.headers["x-kernels"])
    kernels = np.frombuffer(k.content, "<f4").reshape(meta["p_h"] * meta["p_w"], 9, channels)
    s = c.get("/api/skip.bin", params=zoom)
    out_shape = tuple(map(int, s.headers["x-shape"].split(",")))
    skip = np.frombuffer(s.content, "<f4")[: out_shape[0] * out_shape[1]].reshape(out_shape)
    mine = _reference_meta_upscale(features, kernels, meta, skip, out_shape)
    served = c.get("/api/zoom.bin", params=zoom)
    n = out_shape[0] * out_shape[1]
    theirs = np.frombuffer(served.content, "<u2")[:n].reshape(out_shape) / 65535
    assert out_shape == (489, 271)  # floor(213 * 23 / 10), floor(181 * 3 / 2)
    # float16 features: the error grows with the residual (large here: random weights)
    assert np.abs(mine - theirs).max() <= 1e-3
    assert np.abs(mine - theirs).mean() <= 5e-5


@pytest.mark.parametrize(
    "whole_output",
    [{"noise_input": True, "data_consistency": True}, {"self_calibrate": True}],
    ids=["data-consistent", "self-calibrated"],
)
def test_data_consistent_models_zoom_on_the_server_and_say_why(whole_output):
    """Data consistency and self-calibration are an FFT over the whole output: the page
    cannot run them, so the browser-path endpoints refuse with the reason (the page then uses
    /api/zoom.bin)."""
    torch.manual_seed(8)
    args = {"features": 8, "blocks": 1, "norm": "none", "skip": "acquisition"}
    args.update(acquisitions=["kspace", "bicubic"], **whole_output)
    app = server.create_app(model=make({"name": "meta-srgan", "args": args}).eval(), lookahead=0)
    c = TestClient(app, base_url=LOCAL)
    refused = c.get("/api/kernels.bin", params={"scale_h": 2.0, "scale_w": 2.0})
    assert 400 <= refused.status_code < 500
    assert "run on the server" in refused.text
    zoom = c.get(
        "/api/zoom.bin", params=dict(volume=SAMPLE, axis="axial", index=6, scale_h=2.0, scale_w=2.0)
    )
    assert zoom.status_code == 200 and len(zoom.content) > 0
