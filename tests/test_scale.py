from fractions import Fraction

import pytest

from metasrgan.scale import TRAINED_SCALES, AxisScale, Scale2d, as_fraction, scale_from_sizes


def test_trained_scales_are_the_papers_thirty():
    assert len(TRAINED_SCALES) == 30
    assert TRAINED_SCALES[0] == 1.1 and TRAINED_SCALES[-1] == 4.0


@pytest.mark.parametrize(
    "value, frac",
    [
        (2.3, Fraction(23, 10)),
        (2.7, Fraction(27, 10)),
        (3.7, Fraction(37, 10)),
        (2, Fraction(2)),
        ("1.25", Fraction(5, 4)),
    ],
)
def test_scales_become_exact_fractions(value, frac):
    assert as_fraction(value) == frac


@pytest.mark.parametrize("bad", [0.5, float("nan"), float("inf"), -2])
def test_bad_scales_are_rejected(bad):
    with pytest.raises(ValueError):
        as_fraction(bad)


@pytest.mark.parametrize("scale", TRAINED_SCALES)
def test_output_size_is_exact_where_h_times_s_is_integer(scale):
    axis = AxisScale.of(scale)
    for n in (10, 20, 48, 96, 240):
        exact = Fraction(n) * as_fraction(scale)
        if exact.denominator == 1:
            assert axis.out_size(n) == int(exact)
        else:
            assert axis.out_size(n) == int(exact)  # floor
    # the float product 240 * 1.1 = 264.00000000000003 must not change the answer
    assert AxisScale.of(1.1).out_size(240) == 264


@pytest.mark.parametrize("scale", [2.3, 2.7, 3.7, 1.1, 3.3])
def test_integer_index_rule_matches_exact_rational_floor(scale):
    axis = AxisScale.of(scale)
    s = as_fraction(scale)
    for i in range(400):
        exact = Fraction(i) / s
        assert axis.source_index(i) == exact.numerator // exact.denominator
        assert axis.offset(i) == pytest.approx(float(exact - axis.source_index(i)), abs=1e-12)


def test_phases_partition_the_output():
    axis = AxisScale.of(3.7)
    n_out = axis.out_size(50)
    assert sum(axis.phase_count(a, n_out) for a in range(axis.p)) == n_out
    for a in range(axis.p):
        for k in range(axis.phase_count(a, n_out)):
            assert axis.source_index(a + k * axis.p) == axis.phase_start(a) + k * axis.q


def test_asymmetric_and_size_derived_scales():
    s = Scale2d.of((1.5, 3.2))
    assert s.out_shape(20, 10) == (30, 32)
    assert not s.symmetric
    frac = scale_from_sizes(240, 500)
    assert AxisScale(frac.numerator, frac.denominator).out_size(240) == 500
