"""Tiled inference equals untiled inference on a real MRI slice, for both generator variants."""

from importlib import resources

import nibabel as nib
import numpy as np
import pytest
import torch
from fixtures.models import randomised

from metasrgan.intensity import IntensityMap
from metasrgan.registry import make
from metasrgan.scale import AxisScale
from metasrgan.tiling import plan_axis, receptive_radius, upscale_tiled

SCALES = [2.3, 3.7, (1.5, 3.2), 1.1, 2.0]


pytestmark = pytest.mark.usefixtures("one_thread")  # many small operations


@pytest.fixture(scope="module")
def mri_slice() -> torch.Tensor:
    """An odd-sized crop (not a multiple of any q) of a real axial T1 slice, in [0, 1]."""
    path = resources.files("metasrgan") / "samples" / "mni152_val.nii.gz"
    data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    image = data[40:107, 50:111, data.shape[2] // 2]  # 67 x 61, brain and background
    unit = IntensityMap.fit(image).apply(image)
    return torch.from_numpy(np.ascontiguousarray(unit))[None, None]


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    return randomised(model, seed=1)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        "paper": _randomised(make({"name": "meta-srgan"})),
        "bicubic": _randomised(
            make({"name": "meta-srgan", "args": {"skip": "bicubic", "norm": "none"}})
        ),
        # the shipped layout: the skip depends on the acquisition (sinc for k-space: global)
        "acquisition": _randomised(
            make(
                {
                    "name": "meta-srgan",
                    "args": {
                        "skip": "acquisition",
                        "norm": "none",
                        "acquisitions": ["kspace", "thick", "bicubic"],
                    },
                }
            )
        ),
    }


def test_receptive_radius_of_the_paper_network(models):
    # 9x9 head (4) + 5 blocks x 2 convs (10) + body conv (1) + 3x3 upscale neighbourhood (1)
    assert receptive_radius(models["paper"]) == 16
    assert receptive_radius(models["bicubic"]) == 16


@pytest.mark.parametrize("kind", ["paper", "bicubic"])
@pytest.mark.parametrize("scale", SCALES)
def test_tiled_equals_untiled(models, mri_slice, kind, scale):
    model = models[kind]
    with torch.no_grad():
        whole = model(mri_slice, scale)
    tiled = upscale_tiled(model, mri_slice, scale, tile=20)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("acquisition", ["kspace", "thick", "bicubic"])
@pytest.mark.parametrize("scale", [2.3, (3.0, 1.0), 1.1])
def test_tiled_equals_untiled_for_every_skip_of_an_acquisition_model(
    models, mri_slice, acquisition, scale
):
    """The sinc skip (k-space) reads the whole image: tiles carry only the residual."""
    model = models["acquisition"]
    assert model.skip_method(acquisition) == (
        "sinc-mirror" if acquisition == "kspace" else "bicubic"
    )
    with torch.no_grad():
        whole = model(mri_slice, scale, acquisition=acquisition)
    tiled = upscale_tiled(model, mri_slice, scale, tile=20, acquisition=acquisition)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_receptive_radius_is_exact(models, mri_slice):
    """The gradient of one output pixel reaches exactly 16 LR pixels around the one it reads."""
    model = models["paper"]
    x = mri_slice[:, :, :40, :40].clone().requires_grad_(True)
    y = model(x, 2.0)
    y[0, 0, 40, 41].backward()  # reads LR pixel (20, 20)
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 36, 4, 36)
    with pytest.raises(ValueError, match="receptive radius 16"):
        upscale_tiled(model, mri_slice, 2.0, tile=20, overlap=15)


def test_batches_and_single_tile(models, mri_slice):
    model = models["bicubic"]
    x = torch.cat([mri_slice, mri_slice.flip(-1)])
    with torch.no_grad():
        whole = model(x, 2.5)
    torch.testing.assert_close(upscale_tiled(model, x, 2.5, tile=1000), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(upscale_tiled(model, x, 2.5, tile=24), whole, atol=1e-5, rtol=0)


def test_clear_errors(models, mri_slice):
    model = models["paper"]
    with pytest.raises(ValueError, match="size rule"):
        upscale_tiled(model, mri_slice, 2.0, out_shape=(10, 10))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        upscale_tiled(model, mri_slice[0], 2.0)
    model.train()
    try:
        with pytest.raises(ValueError, match="model.eval"):
            upscale_tiled(model, mri_slice, 2.0)
    finally:
        model.eval()


@pytest.mark.parametrize("n, p, q", [(67, 23, 10), (61, 37, 10), (5, 3, 2), (240, 2, 1)])
def test_plan_covers_the_output_once_with_aligned_origins(n, p, q):
    axis = AxisScale(p, q)
    tiles = plan_axis(n, axis, tile=16, halo=16)
    covered = [i for t in tiles for i in range(t.out_start, t.out_stop)]
    assert covered == list(range(axis.out_size(n)))
    for t in tiles:
        assert t.start % q == 0 and 0 <= t.start < t.stop <= n
        assert t.local_start + t.out_stop - t.out_start <= axis.out_size(t.stop - t.start)


def test_large_inputs_are_tiled_by_upscale_tensor_with_the_same_result(monkeypatch):
    from metasrgan import inference
    from metasrgan.registry import make

    torch.manual_seed(0)
    model = make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1}}).eval()
    x = torch.rand(1, 1, 70, 60)
    with torch.no_grad():
        whole = inference.upscale_tensor(model, x, 2.3)
        calls = []
        real = inference.__dict__.get("upscale_tiled")
        assert real is None  # imported lazily, only for large inputs
        import metasrgan.tiling as tiling

        original = tiling.upscale_tiled
        monkeypatch.setattr(
            tiling, "upscale_tiled", lambda *a, **k: calls.append(1) or original(*a, **k)
        )
        monkeypatch.setattr(inference, "TILE_ABOVE_PIXELS", 32 * 32)
        tiled = inference.upscale_tensor(model, x, 2.3)
    assert calls
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)
