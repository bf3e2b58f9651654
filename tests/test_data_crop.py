"""The maximal-information crop against brute force, on random and real MRI slices."""

from __future__ import annotations

import numpy as np
import pytest

from metasrgan.data.crop import crop, crop_max_information, max_information_crop, window_sums
from metasrgan.data.io import read_image
from metasrgan.samples_path import sample_path


def brute_force(image: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = min(size[0], image.shape[0]), min(size[1], image.shape[1])
    best, box = -np.inf, None
    for t in range(image.shape[0] - h + 1):
        for l in range(image.shape[1] - w + 1):
            s = image[t : t + h, l : l + w].astype(np.float64).sum()
            if s > best:  # strict: the first (top-most, then left-most) maximum wins ties
                best, box = s, (t, l, h, w)
    return box


@pytest.mark.parametrize(
    "shape, size",
    [((17, 23), (5, 7)), ((12, 12), (12, 12)), ((9, 30), (4, 1)), ((20, 8), (3, 8))],
)
def test_matches_brute_force_on_random_images(shape, size):
    rng = np.random.default_rng(0)
    for _ in range(5):
        image = rng.random(shape, dtype=np.float32)
        assert max_information_crop(image, size) == brute_force(image, size)
        sums = window_sums(image, size)
        t, l = 2 % sums.shape[0], 1 % sums.shape[1]
        assert sums[t, l] == pytest.approx(image[t : t + size[0], l : l + size[1]].sum(), rel=1e-6)


def test_ties_go_to_the_top_left_most_window():
    image = np.zeros((10, 10), np.float32)
    image[4:6, 4:6] = 1.0  # every 6x6 window containing the square ties
    assert max_information_crop(image, (6, 6)) == (0, 0, 6, 6)
    assert brute_force(image, (6, 6)) == (0, 0, 6, 6)
    rng = np.random.default_rng(1)
    ints = rng.integers(0, 3, (15, 15)).astype(np.float32)  # many exact ties
    assert max_information_crop(ints, (4, 5)) == brute_force(ints, (4, 5))


def test_smaller_image_keeps_the_whole_axis():
    image = np.random.default_rng(2).random((8, 40)).astype(np.float32)
    top, left, h, w = max_information_crop(image, (16, 10))
    assert (top, h) == (0, 8) and w == 10
    assert (left, w) == brute_force(image, (16, 10))[1::2]
    assert max_information_crop(image, (100, 100)) == (0, 0, 8, 40)


def test_real_slice_crop_holds_the_brain():
    volume = read_image(sample_path("colin27_val")).array
    image = volume[:, :, 6]
    box = max_information_crop(image, (96, 96))
    assert box == brute_force(image, (96, 96))
    cropped = crop(image, box)
    assert cropped.shape == (96, 96)
    sums = window_sums(image, (96, 96))
    assert cropped.sum() == pytest.approx(sums.max(), rel=1e-9)
    np.testing.assert_array_equal(crop_max_information(image, (96, 96)), cropped)


def test_bad_arguments():
    with pytest.raises(ValueError, match="2D"):
        max_information_crop(np.zeros((3, 3, 3)), (2, 2))
    with pytest.raises(ValueError, match="positive"):
        max_information_crop(np.zeros((3, 3)), (0, 2))
    with pytest.raises(ValueError, match="does not fit"):
        crop(np.zeros((3, 3)), (2, 2, 2, 2))
