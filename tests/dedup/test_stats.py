"""CLIP's overlap statistics, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
from scipy.stats import beta, binomtest

from openwit.dedup.stats import (
    ALPHA,
    MIN_OVERLAP_FOR_TEST,
    accuracy_split,
    binomial_p_greater,
    clopper_pearson,
    why_no_test,
)


def test_one_sided_binomial_p_value_by_hand():
    # P(X >= 8), X ~ Bin(10, 1/2) = (C(10,8) + C(10,9) + C(10,10)) / 2^10 = 56 / 1024
    assert binomial_p_greater(8, 10, 0.5) == pytest.approx(56 / 1024, rel=1e-12)
    # P(X >= 12), X ~ Bin(12, 0.6) = 0.6^12
    assert binomial_p_greater(12, 12, 0.6) == pytest.approx(0.6**12, rel=1e-12)


def test_clopper_pearson_matches_the_beta_quantiles():
    low, high = clopper_pearson(8, 10)
    assert low == pytest.approx(beta.ppf(0.0025, 8, 3))
    assert high == pytest.approx(beta.ppf(0.9975, 9, 2))
    ci = binomtest(8, 10).proportion_ci(confidence_level=0.995, method="exact")
    assert (low, high) == pytest.approx((ci.low, ci.high))


def test_clopper_pearson_edges_are_closed_form():
    # With 0 successes the upper bound solves (1 - p)^n = tail; with n the lower p^n = tail.
    tail = (1 - 0.995) / 2
    assert clopper_pearson(0, 20) == pytest.approx((0.0, 1 - tail ** (1 / 20)))
    assert clopper_pearson(20, 20) == pytest.approx((tail ** (1 / 20), 1.0))


def test_accuracy_split_by_hand():
    # 30 images: 20 clean with 10 right (50%), 10 overlapping with 8 right (80%).
    correct = [True] * 10 + [False] * 10 + [True] * 8 + [False] * 2
    overlap = [False] * 20 + [True] * 10
    split = accuracy_split(correct, overlap)
    assert (split.n, split.n_overlap, split.correct_overlap) == (30, 10, 8)
    assert split.acc_all == pytest.approx(18 / 30)
    assert split.acc_clean == pytest.approx(0.5)
    assert split.acc_overlap == pytest.approx(0.8)
    assert split.delta_all_minus_clean == pytest.approx(0.1)
    assert split.delta_overlap_minus_clean == pytest.approx(0.3)
    assert split.p_value == pytest.approx(56 / 1024)
    assert split.ci_overlap == pytest.approx(clopper_pearson(8, 10))
    assert split.test_note is None


def test_too_few_overlapping_images_get_no_p_value_but_an_interval():
    correct = [True] * 50 + [False] * 50 + [True, True, True]
    overlap = [False] * 100 + [True] * 3
    split = accuracy_split(correct, overlap)
    assert split.p_value is None
    assert "only 3 overlapping images" in split.test_note
    assert split.ci_overlap == pytest.approx(clopper_pearson(3, 3))


def test_a_test_that_could_never_reject_is_not_reported():
    # Clean accuracy 0.9: even 12 of 12 right gives 0.9^12 = 0.28 > 0.005.
    n = 12
    assert 0.9**n > ALPHA and n >= MIN_OVERLAP_FOR_TEST
    note = why_no_test(n, 0.9)
    assert note is not None and "even if all were right" in note
    assert why_no_test(60, 0.9) is None  # 0.9^60 = 0.0018


def test_no_overlap_and_no_clean_are_said_plainly():
    assert why_no_test(0, 0.5) == "no overlapping images"
    split = accuracy_split([True, False], [True, True])
    assert split.acc_clean is None and split.p_value is None
    assert "no clean images" in split.test_note
    split = accuracy_split([True, False], [False, False])
    assert split.acc_overlap is None and split.ci_overlap is None


def test_perfect_clean_accuracy_has_no_test():
    assert "100%" in why_no_test(30, 1.0)


def test_p_value_threshold_rule_is_the_documented_one():
    for n in range(MIN_OVERLAP_FOR_TEST, 40):
        for acc in (0.3, 0.6, 0.8):
            blocked = why_no_test(n, acc) is not None
            assert blocked == (n * math.log(acc) > math.log(ALPHA))
