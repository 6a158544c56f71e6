"""The statistics of an experiment's summary: pure functions of lists of numbers, no Django.

Percentiles are nearest-rank, as batch_run's summary and bench/ compute them: p50 of 1..100 is 50,
p95 is 95, and every percentile is a value that occurred. Two arms are compared on one scorer by
the exact two-sided sign test over the examples both scored: an example is `better` when the
candidate's value is higher, `worse` when lower, `same` when equal (ties carry no information
about which is better and are dropped from the test). The verdict is `better` or `worse` when
p < ALPHA (0.05) in that direction, else `no significant difference`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no significant difference"


def mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile, `fraction` in (0, 1]: the smallest value with at least that share
    of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def pass_rate(passed: Sequence[bool]) -> float | None:
    return sum(1 for value in passed if value) / len(passed) if passed else None


def sign_test_p(better: int, worse: int) -> float:
    """Exact two-sided sign test: the probability, with n = better + worse fair coin flips, of a split
    at least as uneven as this one. 1.0 with no informative pair."""
    n = better + worse
    if n == 0:
        return 1.0
    k = min(better, worse)
    tail = math.fsum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Comparison:
    better: int
    worse: int
    same: int
    mean_delta: float | None  # mean of candidate - baseline over the pairs
    p_value: float
    verdict: str


def compare_paired(pairs: Sequence[tuple[float, float]], *, alpha: float = ALPHA) -> Comparison:
    """(baseline value, candidate value) per example, both scored, to counts, p-value and verdict."""
    better = sum(1 for base, cand in pairs if cand > base)
    worse = sum(1 for base, cand in pairs if cand < base)
    same = len(pairs) - better - worse
    p_value = sign_test_p(better, worse)
    verdict = NO_DIFFERENCE
    if p_value < alpha and better != worse:
        verdict = BETTER if better > worse else WORSE
    return Comparison(
        better=better,
        worse=worse,
        same=same,
        mean_delta=mean([cand - base for base, cand in pairs]),
        p_value=p_value,
        verdict=verdict,
    )


def outcome(base: float, cand: float) -> str:
    """One example's outcome for the candidate: better, worse or same."""
    return BETTER if cand > base else WORSE if cand < base else "same"
