"""Volume geometry: the refined grid lands exactly on the input's field of view."""

from fractions import Fraction

import nibabel as nib
import numpy as np
import pytest
import torch

from metasrgan.registry import make
from metasrgan.samples_path import sample_path
from metasrgan.volume import plan_volume, scaled_affine, spacing_of, upscale_volume


def _rotated_affine():
    angle = np.deg2rad(20)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 3.0])
    affine[:3, 3] = [-90.0, 12.5, 40.0]
    return affine


@pytest.mark.parametrize("s", [2.0, 2.5, 3.7])
def test_new_voxel_j_sits_at_old_index_j_plus_half_over_s_minus_half(s):
    a = _rotated_affine()
    b = scaled_affine(a, (s, s, 1.0))
    for j in (0, 1, 7, 20):
        new_world = b @ np.array([j, j, 3, 1.0])
        old_index = (j + 0.5) / s - 0.5
        old_world = a @ np.array([old_index, old_index, 3, 1.0])
        np.testing.assert_allclose(new_world, old_world, atol=1e-9)
    # the outer edge of voxel 0 is the same plane: FOV starts where the input's starts
    np.testing.assert_allclose(b @ [-0.5, -0.5, 0, 1], a @ [-0.5, -0.5, 0, 1], atol=1e-9)
    np.testing.assert_allclose(spacing_of(b), np.array(spacing_of(a)) / [s, s, 1.0], rtol=1e-12)


def test_rotations_are_kept():
    a = _rotated_affine()
    b = scaled_affine(a, (2.0, 2.0, 5.0))
    unit = lambda m: m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)  # noqa: E731
    np.testing.assert_allclose(unit(a), unit(b), atol=1e-12)


def test_plan_picks_the_thick_axis_and_reaches_a_spacing():
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    plan = plan_volume((40, 44, 10), affine, spacing=1.0)
    assert plan.through == 2 and plan.in_plane == (0, 1)
    assert plan.factors == (Fraction(1), Fraction(1), Fraction(5))
    assert plan.out_shape == (40, 44, 50)
    plan = plan_volume((40, 44, 10), affine, scale=2.5)
    assert plan.factors == (Fraction(5, 2), Fraction(5, 2), Fraction(1))
    assert plan.out_shape == (100, 110, 10)


def test_plan_rejects_bad_input_clearly():
    with pytest.raises(ValueError, match="4D"):
        plan_volume((4, 4, 4, 2), np.eye(4), scale=2)
    with pytest.raises(ValueError, match="broken header"):
        plan_volume((4, 4, 4), np.zeros((4, 4)), scale=2)
    with pytest.raises(ValueError, match="coarser"):
        plan_volume((4, 4, 4), np.eye(4), spacing=2.0)
    with pytest.raises(ValueError, match="exactly one"):
        plan_volume((4, 4, 4), np.eye(4))


def test_non_integer_sizes_are_reported():
    plan = plan_volume((45, 45, 3), np.eye(4), scale=2.3, axes=(0, 1))
    assert plan.out_shape == (103, 103, 3)
    assert any("not an integer" in n for n in plan.notes())


@pytest.fixture(scope="module")
def bicubic_model():
    torch.manual_seed(0)
    return make({"name": "meta-srgan", "args": {"skip": "bicubic", "norm": "none"}}).eval()


def test_volume_upscale_in_plane_keeps_units_and_fov(bicubic_model):
    img = nib.load(sample_path("colin27_val"))
    data = img.get_fdata(dtype=np.float32)[60:100, 70:110, :4]
    plan = plan_volume(data.shape, img.affine, scale=2)
    out, affine = upscale_volume(bicubic_model, data, img.affine, plan, progress=False)
    assert out.shape == (80, 80, 4) and out.dtype == np.float32
    assert abs(out.mean() - data.mean()) < 0.05 * data.mean()  # same intensity units
    assert out.min() >= data.min() - 1e-3 and out.max() <= data.max() + 1e-3
    np.testing.assert_allclose(spacing_of(affine), [0.5, 0.5, 1.0])


def test_thick_slices_become_isotropic(bicubic_model):
    img = nib.load(sample_path("mni152_val"))
    data = img.get_fdata(dtype=np.float32)[50:80, 60:90, ::3][:, :, :4]  # 1 x 1 x 3 mm
    affine = img.affine @ np.diag([1, 1, 3, 1])
    plan = plan_volume(data.shape, affine, spacing=1.0)
    assert plan.through == 2
    out, new_affine = upscale_volume(bicubic_model, data, affine, plan, progress=False)
    assert out.shape == (30, 30, 12)
    np.testing.assert_allclose(spacing_of(new_affine), [1.0, 1.0, 1.0], atol=1e-9)
    # voxels on the original slice positions (j = 3k + 1) reproduce the original slices closely
    assert np.abs(out[:, :, 1::3] - data).mean() < 0.1 * data.mean()


def test_one_orientation_rule_for_slicing():
    from metasrgan.volume import stack_of_slices, through_plane_axis, volume_of_slices

    assert through_plane_axis((40, 44, 10), np.diag([1.0, 1.0, 5.0, 1.0])) == 2  # thick axis
    assert through_plane_axis((40, 44, 10), np.diag([4.0, 1.0, 1.0, 1.0])) == 0
    # isotropic, stored sagittally (voxel axis 1 runs inferior-superior): axial slices
    sagittal = np.array([[0, 0, -1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    assert through_plane_axis((40, 44, 10), sagittal) == 1
    assert through_plane_axis((40, 1, 10), np.diag([1.0, 1.0, 5.0, 1.0])) == 1  # one slice
    assert through_plane_axis((40, 44, 10), None) == 2
    volume = np.arange(24.0).reshape(2, 3, 4)
    for axis in range(3):
        stack = stack_of_slices(volume, axis)
        assert stack.shape[0] == volume.shape[axis]
        np.testing.assert_array_equal(stack[1], np.take(volume, 1, axis=axis))
        np.testing.assert_array_equal(volume_of_slices(stack, axis), volume)


def test_singular_and_non_finite_affines_are_refused():
    from metasrgan.volume import check_affine

    for bad, message in [(np.diag([1.0, 1.0, 0.0, 1.0]), "singular"),
                         (np.full((4, 4), np.nan), "NaN"), (np.eye(3), "4x4")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            check_affine(bad, "x.nii")
    sheared = np.eye(4)
    sheared[0, 1] = sheared[1, 0] = 0.999999999  # two columns nearly parallel: collapsed
    with pytest.raises(ValueError, match="rank 2"):
        check_affine(sheared)
    check_affine(_rotated_affine())


def test_spacing_keeps_axes_already_fine_and_notes_the_reached_spacing():
    affine = np.diag([0.9375, 0.9375, 5.0, 1.0])
    plan = plan_volume((40, 40, 10), affine, spacing=1.0)
    assert plan.factors == (Fraction(1), Fraction(1), Fraction(5))
    assert any("kept at 0.9375 mm" in n for n in plan.notes())
    plan = plan_volume((40, 40, 10), np.diag([0.898, 0.898, 3.0, 1.0]), spacing=0.5)
    assert plan.factors == (Fraction(9, 5), Fraction(9, 5), Fraction(6))
    assert any("nearest exact factor" in n for n in plan.notes())
