"""The statistics of CLIP's overlap analysis (Radford et al. 2021, section 5).

For each evaluation set the images are split into *Overlap* (a training sample matches) and
*Clean*. The question is whether the model does better on Overlap than its Clean accuracy
predicts. Two figures answer it, both as CLIP reports them: a one-sided binomial test of the
Overlap hits with the Clean accuracy as the null probability (its p-value), and a 99.5%
Clopper-Pearson (exact, two-sided) confidence interval on the Overlap accuracy.

The gate that decides when a p-value is reported at all is openwit's own, not CLIP's. A
one-sided test at level ``alpha`` can only ever reject if an Overlap subset answered
*entirely correctly* would be significant, i.e. if ``acc_clean ** n_overlap <= alpha``;
below that no outcome means anything. ``alpha`` is 0.005, the complement of the interval's
level, so the gate and the interval speak of the same confidence. openwit also asks for at
least :data:`MIN_OVERLAP_FOR_TEST` overlapping images, so a verdict never rests on a
handful of pictures. Where either fails, the p-value is ``None`` and a note says why; the
interval is still reported (it is honest at any size: it is just wide).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: Confidence level of the Clopper-Pearson interval on the Overlap accuracy (the level of
#: the intervals CLIP reports).
CI_LEVEL = 0.995
#: Level of openwit's reporting gate (:func:`why_no_test`): the complement of the interval's
#: level. openwit's choice; CLIP reports p-values without such a gate.
ALPHA = 1 - CI_LEVEL
#: Fewest overlapping images for which a p-value is reported (openwit's rule, not CLIP's).
MIN_OVERLAP_FOR_TEST = 10


def clopper_pearson(successes: int, trials: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion."""
    from scipy.stats import beta

    if trials <= 0:
        raise ValueError("an interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} outside 0..{trials}")
    tail = (1 - level) / 2
    failures = trials - successes
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, failures + 1))
    high = 1.0 if failures == 0 else float(beta.ppf(1 - tail, successes + 1, failures))
    return low, high


def binomial_p_greater(successes: int, trials: int, null: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, null): the one-sided p-value."""
    from scipy.stats import binomtest

    return float(binomtest(successes, trials, null, alternative="greater").pvalue)


def why_no_test(n_overlap: int, acc_clean: float | None) -> str | None:
    """Why no test can be made (a sentence), or None when it can."""
    if n_overlap == 0:
        return "no overlapping images"
    if acc_clean is None:
        return "no clean images to estimate the null accuracy"
    if n_overlap < MIN_OVERLAP_FOR_TEST:
        return (
            f"only {n_overlap} overlapping images; a p-value is reported from "
            f"{MIN_OVERLAP_FOR_TEST} on"
        )
    if acc_clean >= 1.0:
        return "clean accuracy is 100%: overlap cannot do better"
    if acc_clean > 0 and n_overlap * math.log(acc_clean) > math.log(ALPHA):
        return (
            f"too few overlapping images ({n_overlap}) for the test to reach p <= {ALPHA:g} "
            f"even if all were right (clean accuracy {acc_clean:.3f})"
        )
    return None


@dataclass
class AccuracySplit:
    """Accuracy on All, Clean and Overlap images, and the test of Overlap against Clean."""

    n: int
    n_overlap: int
    correct_all: int
    correct_overlap: int
    acc_all: float | None
    acc_clean: float | None
    acc_overlap: float | None
    delta_all_minus_clean: float | None
    delta_overlap_minus_clean: float | None
    p_value: float | None
    ci_overlap: tuple[float, float] | None
    test_note: str | None

    def to_json(self) -> dict:
        data = asdict(self)
        data["ci_overlap"] = list(self.ci_overlap) if self.ci_overlap else None
        return data


def accuracy_split(correct: list[bool], overlap: list[bool]) -> AccuracySplit:
    """Split per-image correctness by overlap and test Overlap against Clean."""
    if len(correct) != len(overlap):
        raise ValueError("one correctness and one overlap flag per image")
    n = len(correct)
    n_overlap = sum(overlap)
    n_clean = n - n_overlap
    correct_all = sum(correct)
    correct_overlap = sum(c for c, o in zip(correct, overlap) if o)
    correct_clean = correct_all - correct_overlap
    acc_all = correct_all / n if n else None
    acc_clean = correct_clean / n_clean if n_clean else None
    acc_overlap = correct_overlap / n_overlap if n_overlap else None
    blocker = why_no_test(n_overlap, acc_clean)
    p_value = None
    if blocker is None:
        assert acc_clean is not None
        p_value = binomial_p_greater(correct_overlap, n_overlap, acc_clean)
    return AccuracySplit(
        n=n,
        n_overlap=n_overlap,
        correct_all=correct_all,
        correct_overlap=correct_overlap,
        acc_all=acc_all,
        acc_clean=acc_clean,
        acc_overlap=acc_overlap,
        delta_all_minus_clean=_minus(acc_all, acc_clean),
        delta_overlap_minus_clean=_minus(acc_overlap, acc_clean),
        p_value=p_value,
        ci_overlap=clopper_pearson(correct_overlap, n_overlap) if n_overlap else None,
        test_note=blocker,
    )


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
