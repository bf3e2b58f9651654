"""Background skipping computes only what anatomy reaches, with the dense pass's output."""

import numpy as np
import pytest
import torch
from fixtures.models import randomised
from scipy import ndimage

from metasrgan.background import BackgroundSkip, anatomy_box
from metasrgan.intensity import IntensityMap
from metasrgan.registry import make
from metasrgan.samples_path import sample_path
from metasrgan.volume import plan_volume, slice_batch, upscale_volume

pytestmark = pytest.mark.usefixtures("one_thread")

ACQUISITION_MODEL = {
    "skip": "acquisition",
    "norm": "none",
    "acquisitions": ["kspace", "thick", "bicubic"],
}


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    return randomised(model, seed=2)


@pytest.fixture(scope="module")
def stripped() -> np.ndarray:
    """A BraTS-like skull-stripped slab: the bundled Colin27 T1 with everything outside a
    brain mask (threshold, largest component, eroded past the skull, filled) set to 0."""
    data = _load("colin27_val")
    plane = np.zeros((3, 3, 3), dtype=bool)
    plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)  # in-plane only: a thin slab
    mask = ndimage.binary_erosion(data > np.percentile(data[data > 0], 40), plane, 6)
    labels, _ = ndimage.label(mask)
    largest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    brain = ndimage.binary_dilation(largest, plane, 6)
    brain = np.stack([ndimage.binary_fill_holes(brain[..., k]) for k in range(data.shape[2])], -1)
    frame = np.zeros((240, 240, data.shape[2]), dtype=np.float32)  # BraTS's in-plane frame
    frame[30:211, 14:227] = np.where(brain, data, 0)
    return frame


def _load(name: str) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(sample_path(name))).dataobj, dtype=np.float32)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        "paper": _randomised(make({"name": "meta-srgan"})),
        # the same receptive radius and layers with fewer channels (fast)
        "small": _randomised(make({"name": "meta-srgan", "args": {"features": 16}})),
        "acquisition": _randomised(
            make({"name": "meta-srgan", "args": {**ACQUISITION_MODEL, "features": 16}})
        ),
    }


def _slices(volume: np.ndarray, k: slice) -> torch.Tensor:
    unit = IntensityMap.fit(volume).apply(volume, clip=False)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(unit[:, :, k], -1, 0)))[:, None]


@pytest.mark.parametrize(
    "kind, scale, acquisition",
    [
        ("paper", 2.3, None),
        ("small", 2.0, None),
        ("acquisition", 2.0, "kspace"),  # global sinc skip
        ("acquisition", (1.0, 5.0), "thick"),  # through-plane
        ("acquisition", 3.7, "bicubic"),
    ],
)
def test_skipping_equals_dense_on_skull_stripped_slices(models, stripped, kind, scale, acquisition):
    model = models[kind]
    x = _slices(stripped, slice(5, 6))
    value, box = anatomy_box(x)
    assert value == float(x.min()) and box is not None
    skip = BackgroundSkip(model, scale, acquisition)
    with torch.no_grad():
        dense = model(x, scale, acquisition=acquisition)
        sparse = skip(x)
    assert sparse is not None and skip.skipped_pixels > 0.3 * skip.pixels
    torch.testing.assert_close(sparse, dense, atol=2e-5, rtol=1e-5)


def test_anatomy_on_the_border_and_empty_slices(models, stripped):
    model = models["acquisition"]
    x = _slices(stripped, slice(5, 6))
    empty = torch.full_like(x, float(x[0, 0, 0, 0]))
    top, corner = empty.clone(), empty.clone()
    top[..., :3, 40:60] = x[..., 90:93, 60:80]  # touches the top border
    corner[..., -20:, -9:] = x[..., 90:110, 60:69]  # the bottom right corner
    skip = BackgroundSkip(model, 2.5, "kspace")
    with torch.no_grad():
        for image in (top, corner, empty):
            dense = model(image, 2.5, acquisition="kspace")
            sparse = skip(image)
            assert sparse is not None
            torch.testing.assert_close(sparse, dense, atol=2e-5, rtol=1e-5)


def test_noisy_backgrounds_run_dense(models):
    data = _load("colin27_val")
    noisy = data + np.random.default_rng(0).rayleigh(3.0, data.shape).astype(np.float32)
    x = _slices(noisy, slice(5, 6))
    assert BackgroundSkip(models["small"], 2.0)(x) is None


def test_volume_output_is_the_same_with_and_without_skipping(stripped, monkeypatch):
    """The whole pipeline (in-plane and through-plane passes) on a 3 mm thick-slice slab."""
    skipped = []
    call = BackgroundSkip.__call__
    monkeypatch.setattr(
        BackgroundSkip, "__call__", lambda self, x: skipped.append(call(self, x)) or skipped[-1]
    )
    torch.manual_seed(0)
    model = _randomised(make({"name": "meta-srgan", "args": {**ACQUISITION_MODEL, "features": 8}}))
    volume = stripped[:, :, 3:9]
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    plan = plan_volume(volume.shape, affine, spacing=(0.5, 0.5, 1.0))
    fast, a = upscale_volume(model, volume, affine, plan, progress=False)
    dense, b = upscale_volume(model, volume, affine, plan, progress=False, skip_background=False)
    np.testing.assert_array_equal(a, b)
    assert fast.shape == plan.out_shape == (480, 480, 18)
    np.testing.assert_allclose(fast, dense, atol=2e-5 * float(volume.max()), rtol=0)
    assert any(y is not None for y in skipped)  # the in-plane batch skipped background


def test_slice_batch_follows_the_available_memory(monkeypatch, models):
    from metasrgan import volume

    model = models["paper"]
    monkeypatch.setattr(volume, "available_memory", lambda device: 16 << 20)
    small = slice_batch(model, (96, 96), (192, 192))
    monkeypatch.setattr(volume, "available_memory", lambda device: 64 << 30)
    large = slice_batch(model, (96, 96), (192, 192))
    assert small == 1 and 1 < large <= volume.MAX_AUTO_BATCH
    assert slice_batch(model, (96, 96), (192, 192), limit=3) == min(3, large)
    # the batch's working memory stays within the cap whatever the slice size
    for side in (64, 240, 512):
        n = slice_batch(model, (side, side), (2 * side, 2 * side))
        per = volume.slice_working_bytes(model, (side, side), (2 * side, 2 * side))
        assert n == 1 or n * per <= volume.BATCH_MEMORY_CAP["cpu"]


def test_windows_grow_with_the_reach_of_each_block(models):
    """Head (9x9) and block 0 on the box grown by 8, then each block's two 3x3 convolutions
    add 2, the last convolution 1: the windows are as small as exactness allows."""
    from metasrgan.background import stage_reaches
    from metasrgan.tiling import receptive_radius

    model = models["small"]
    assert stage_reaches(model) == [8, 9, 11, 13, 15, 16]
    assert receptive_radius(model) == 16  # + 1 for the upscaler's neighbourhood: the last window
