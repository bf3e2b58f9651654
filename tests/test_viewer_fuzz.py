"""Schemathesis over the viewer's OpenAPI: whatever the parameters, never a 500, and every
error is JSON with a message.  Bounded: a few examples per operation, no deadline."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from metasrgan.registry import make  # noqa: E402
from metasrgan.viewer import server  # noqa: E402

LOCAL = "http://127.0.0.1:8000"


def _app():
    torch.manual_seed(4)
    model = make({"name": "meta-srgan", "args": {"skip": "bicubic", "norm": "none"}}).eval()
    limits = server.UploadLimits(max_bytes=1024**2, max_voxels=1024**2)
    return server.create_app(model=model, limits=limits, lookahead=0)


APP = _app()
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP, headers={"host": "127.0.0.1"})


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_request_breaks_the_viewer(case):
    headers = {"host": "127.0.0.1:8000", "x-metasrgan-token": APP.state.viewer.token}
    response = case.call(headers=headers)
    assert response.status_code < 500, (case.path, case.query, response.text)
    if response.status_code >= 400:
        kind = response.headers.get("content-type")
        kind = kind[0] if isinstance(kind, list) else kind
        assert kind.startswith("application/json"), response.text
        assert isinstance(response.json().get("error"), str), response.text
