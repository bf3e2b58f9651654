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


@pytest.mark.parametrize("scale", TRAINED_SCALES + (7 / 3, 1.25))
def test_lr_size_rule_inverts_the_output_size_rule(scale):
    from metasrgan.scale import parse_scale

    axis = AxisScale.of(parse_scale(Fraction(scale).limit_denominator(10)))
    for n in range(1, 300):
        lr = axis.in_size(n)
        assert lr * axis.p <= n * axis.q < (lr + 1) * axis.p  # lr * s <= n < (lr + 1) * s
        if n % axis.p == 0:
            assert axis.out_size(lr) == n
    assert Scale2d.of((1.5, 2)).in_shape(96, 96) == (64, 48)


def test_one_scale_list_parser_for_training_and_evaluation():
    from metasrgan.scale import parse_scales

    assert parse_scales("1.1:4.0:0.1", as_float=True) == TRAINED_SCALES
    assert parse_scales(2, as_float=True) == (2.0,)
    assert parse_scales([1.5, 2], as_float=True) == (1.5, 2.0)
    assert parse_scales("3,2,2.5:3:0.5", sort=True) == (2, Fraction(5, 2), 3)
    for bad in ("", "2:1:0.1", "1:2", "x", "0.5", "4:1:0.1", "1:16:0.0001", "4.01"):
        with pytest.raises(ValueError):
            parse_scales(bad)
