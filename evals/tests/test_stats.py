"""evals.stats against known values (the sign test's by hand: 2 * sum(C(n, i), i <= k) / 2**n)."""

import pytest

from evals import stats


def test_mean_median_percentiles_and_pass_rate():
    assert stats.mean([1, 2, 3, 4]) == 2.5
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, 1, 3, 2]) == 2.5
    values = list(range(1, 101))
    # Nearest rank, as batch_run's summary: values that occurred.
    assert (stats.percentile(values, 0.50), stats.percentile(values, 0.95)) == (50, 95)
    assert (stats.percentile([7], 0.5), stats.percentile([7], 0.95)) == (7, 7)
    assert stats.percentile([10, 20, 30, 40], 0.95) == 40
    assert stats.pass_rate([True, False, True, True]) == 0.75
    for function in (stats.mean, stats.median, stats.pass_rate):
        assert function([]) is None
    assert stats.percentile([], 0.5) is None


@pytest.mark.parametrize(
    ("better", "worse", "p"),
    [
        (9, 1, 0.021484375),  # 2 * 11 / 1024
        (6, 4, 0.75390625),  # 2 * 386 / 1024
        (1, 9, 0.021484375),  # symmetric
        (10, 0, 0.001953125),
        (5, 5, 1.0),
        (4, 0, 0.125),
        (0, 0, 1.0),
    ],
)
def test_sign_test_p_values(better, worse, p):
    assert stats.sign_test_p(better, worse) == pytest.approx(p, abs=1e-12)


def test_nine_of_ten_better_is_significant_and_ties_are_dropped():
    pairs = [(0.0, 1.0)] * 9 + [(1.0, 0.5)] + [(0.5, 0.5)] * 5

    result = stats.compare_paired(pairs)

    assert (result.better, result.worse, result.same) == (9, 1, 5)
    assert round(result.p_value, 5) == 0.02148
    assert result.verdict == "better"
    assert result.mean_delta == pytest.approx((9 - 0.5) / 15)


def test_six_of_ten_is_no_significant_difference():
    result = stats.compare_paired([(0, 1)] * 6 + [(1, 0)] * 4)

    assert round(result.p_value, 3) == 0.754
    assert result.verdict == "no significant difference"


def test_significantly_worse_and_the_alpha_boundary():
    assert stats.compare_paired([(1, 0)] * 6).verdict == "worse"  # p = 0.03125
    assert stats.compare_paired([(1, 0)] * 5).verdict == "no significant difference"  # p = 0.0625
    assert stats.compare_paired([(1, 0)] * 6, alpha=0.01).verdict == "no significant difference"


def test_no_pairs():
    result = stats.compare_paired([])

    assert (result.better, result.worse, result.same, result.mean_delta) == (0, 0, 0, None)
    assert (result.p_value, result.verdict) == (1.0, "no significant difference")


def test_outcome():
    assert [stats.outcome(0.2, 0.5), stats.outcome(0.5, 0.2), stats.outcome(0.5, 0.5)] == ["better", "worse", "same"]
