"""Hand-computed checks of crit.trainer.metrics, degenerate cases included.

The arithmetic behind each expected number is written next to it, so a reader can
check the test without trusting the code under test.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crit.trainer.metrics import (
    accuracy,
    balanced_accuracy,
    bootstrap_ci,
    micro_f1,
    numeric_match,
    sensitivity_specificity,
)

P, A, N = "present", "absent", "not mentioned"
BOOLEAN_LABELS = (P, A, N)


# --- balanced accuracy ---------------------------------------------------------------


def test_constant_present_on_skewed_data_looks_good_only_to_accuracy() -> None:
    gold = [P] * 9 + [A]
    pred = [P] * 10
    # accuracy: 9 right of 10 = 0.9
    assert accuracy(gold, pred) == pytest.approx(0.9)
    # recall(present) = 9/9 = 1, recall(absent) = 0/1 = 0; mean = 0.5
    assert balanced_accuracy(gold, pred) == pytest.approx(0.5)


def test_constant_present_on_balanced_binary_is_half() -> None:
    gold = [P] * 5 + [A] * 5
    pred = [P] * 10
    # recall(present) = 5/5 = 1, recall(absent) = 0/5 = 0; mean = 0.5
    assert balanced_accuracy(gold, pred) == pytest.approx(0.5)


def test_not_mentioned_is_its_own_class() -> None:
    gold = [P, P, A, N, N, N]
    pred = [P, A, A, N, P, N]
    # recall(present) = 1/2, recall(absent) = 1/1, recall(not mentioned) = 2/3
    # mean = (0.5 + 1 + 0.6667) / 3 = 0.7222
    assert balanced_accuracy(gold, pred, labels=BOOLEAN_LABELS) == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    # plain accuracy: 4 of 6
    assert accuracy(gold, pred) == pytest.approx(4 / 6)


def test_prediction_never_in_gold_counts_as_wrong() -> None:
    gold = [P, P, A, A]
    pred = [P, "error", A, N]
    # recall(present) = 1/2 ("error" is wrong), recall(absent) = 1/2 (N is wrong);
    # N is not in gold, so it is not a class of the average: mean = 0.5
    assert balanced_accuracy(gold, pred) == pytest.approx(0.5)
    assert balanced_accuracy(gold, pred, labels=BOOLEAN_LABELS) == pytest.approx(0.5)


def test_all_gold_one_class_averages_that_class_only() -> None:
    gold = [A, A, A]
    # recall(absent) = 2/3; present is not in gold and not averaged
    assert balanced_accuracy(gold, [A, A, P]) == pytest.approx(2 / 3)
    # a constant guess of the only gold class scores 1.0: documented, not hidden
    assert balanced_accuracy(gold, [A, A, A]) == pytest.approx(1.0)


def test_balanced_accuracy_empty_and_errors() -> None:
    assert balanced_accuracy([], []) is None
    with pytest.raises(ValueError, match="gold has 2 items but pred has 1"):
        balanced_accuracy([P, A], [P])
    with pytest.raises(ValueError, match="not among the allowed labels"):
        balanced_accuracy([P, N], [P, N], labels=[P, A])


# --- sensitivity and specificity -----------------------------------------------------


def test_sensitivity_and_specificity_are_not_swapped() -> None:
    gold = [P, P, P, P, A, A, A, A, A, A]
    pred = [P, P, P, A, A, A, A, A, A, P]
    # tp = 3, fn = 1 -> sensitivity = 3/4 = 0.75
    # tn = 5, fp = 1 -> specificity = 5/6 = 0.8333
    sensitivity, specificity = sensitivity_specificity(gold, pred, positive=P)
    assert sensitivity == pytest.approx(0.75)
    assert specificity == pytest.approx(5 / 6)
    # the paper's swap would have reported (0.8333, 0.75): a different pair
    assert sensitivity != pytest.approx(specificity)
    # binary balanced accuracy is their mean: (0.75 + 0.8333) / 2 = 0.7917
    assert balanced_accuracy(gold, pred) == pytest.approx((0.75 + 5 / 6) / 2)


def test_specificity_is_one_versus_rest() -> None:
    gold = [P, A, N]
    pred = [P, N, A]
    # gold negatives are A and N; neither predicted present -> tn = 2, fp = 0 -> 1.0
    assert sensitivity_specificity(gold, pred, positive=P) == (1.0, 1.0)
    # whereas per-class recall sees the A/N confusion: (1 + 0 + 0) / 3
    assert balanced_accuracy(gold, pred) == pytest.approx(1 / 3)


def test_sensitivity_undefined_without_gold_positives() -> None:
    # no gold positive: tp + fn = 0 -> None; tn = 1, fp = 1 -> specificity 0.5
    assert sensitivity_specificity([A, N], [A, P], positive=P) == (None, 0.5)
    # no gold negative: specificity None
    assert sensitivity_specificity([P, P], [P, A], positive=P) == (0.5, None)
    assert sensitivity_specificity([], [], positive=P) == (None, None)


# --- micro-F1 ------------------------------------------------------------------------


def test_micro_f1_pools_counts_across_questions() -> None:
    q1_gold, q1_pred = [P, A, N, P], [P, P, N, A]  # tp 1, fp 1, fn 1
    q2_gold, q2_pred = [P, P, A], [P, P, P]  # tp 2, fp 1, fn 0
    # pooled: tp 3, fp 2, fn 1 -> F1 = 2*3 / (2*3 + 2 + 1) = 6/9
    assert micro_f1(q1_gold + q2_gold, q1_pred + q2_pred) == pytest.approx(6 / 9)
    # per question: 2/(2+1+1) = 0.5 and 4/(4+1) = 0.8; their mean (0.65) is macro, not micro
    assert micro_f1(q1_gold, q1_pred) == pytest.approx(0.5)
    assert micro_f1(q2_gold, q2_pred) == pytest.approx(0.8)


def test_micro_f1_degenerate_cases() -> None:
    # no positive in gold nor pred: tp = fp = fn = 0, undefined -> None
    assert micro_f1([A, N, N], [N, A, N]) is None
    assert micro_f1([], []) is None
    # positives predicted but none in gold: tp 0, fp 2 -> 0 / 2 = 0.0
    assert micro_f1([A, N], [P, P]) == 0.0
    # another positive class name
    assert micro_f1(["yes", "no"], ["yes", "yes"], positive="yes") == pytest.approx(2 / 3)


# --- numeric match -------------------------------------------------------------------


def test_numeric_match_hand_computed() -> None:
    gold = [1.0, 2.0, None, None, 10.0, 100.0]
    pred = [1.0, 2.08, None, 3.0, None, 106.0]
    # pair 1: equal                                  -> exact, within, NA-agree
    # pair 2: |2.08 - 2| = 0.08 <= 0.05 * 2 = 0.1     -> within, NA-agree
    # pair 3: both None                              -> exact, within, NA-agree
    # pair 4, 5: one None                            -> misses everywhere
    # pair 6: |106 - 100| = 6 > 0.05 * 100 = 5        -> NA-agree only
    result = numeric_match(gold, pred)
    assert result["n"] == 6
    assert result["exact"] == pytest.approx(2 / 6)
    assert result["within_tol"] == pytest.approx(3 / 6)
    assert result["na_agreement"] == pytest.approx(4 / 6)
    assert (result["n_gold_stated"], result["n_pred_stated"]) == (4, 4)


def test_numeric_match_tolerances() -> None:
    # relative tolerance is relative to gold: 0.05 * 0 = 0, so 0.1 vs 0 misses ...
    assert numeric_match([0.0], [0.1])["within_tol"] == 0.0
    # ... unless an absolute tolerance covers it: 0.1 <= 0.2
    assert numeric_match([0.0], [0.1], abs_tol=0.2)["within_tol"] == 1.0
    # rel_tol = 0 makes within_tol the exact rate
    assert numeric_match([2.0], [2.08], rel_tol=0.0)["within_tol"] == 0.0
    with pytest.raises(ValueError):
        numeric_match([1.0], [1.0], rel_tol=-0.1)


def test_numeric_match_none_nan_and_empty() -> None:
    # NaN is missing, like None: both missing is a match
    result = numeric_match([None, float("nan")], [float("nan"), None])
    assert (result["exact"], result["within_tol"], result["na_agreement"]) == (1.0, 1.0, 1.0)
    assert (result["n_gold_stated"], result["n_pred_stated"]) == (0, 0)
    empty = numeric_match([], [])
    assert empty["n"] == 0
    assert empty["exact"] is None and empty["within_tol"] is None and empty["na_agreement"] is None


# --- bootstrap -----------------------------------------------------------------------


GOLD_20 = [P] * 8 + [A] * 8 + [N] * 4
PRED_20 = [P] * 6 + [A] * 2 + [A] * 7 + [P] + [N] * 3 + [A]


def test_bootstrap_contains_point_and_is_deterministic() -> None:
    # recall(present) = 6/8, recall(absent) = 7/8, recall(not mentioned) = 3/4
    point = balanced_accuracy(GOLD_20, PRED_20)
    assert point == pytest.approx((6 / 8 + 7 / 8 + 3 / 4) / 3)
    ci = bootstrap_ci(balanced_accuracy, GOLD_20, PRED_20, n=500, seed=7)
    assert ci is not None
    low, high = ci
    assert 0.0 <= low <= point <= high <= 1.0
    assert low < high
    assert bootstrap_ci(balanced_accuracy, GOLD_20, PRED_20, n=500, seed=7) == ci
    assert bootstrap_ci(balanced_accuracy, GOLD_20, PRED_20, n=500, seed=8) != ci


def test_bootstrap_narrows_with_alpha() -> None:
    wide = bootstrap_ci(balanced_accuracy, GOLD_20, PRED_20, n=500, alpha=0.01)
    narrow = bootstrap_ci(balanced_accuracy, GOLD_20, PRED_20, n=500, alpha=0.5)
    assert wide is not None and narrow is not None
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]


def test_bootstrap_skips_undefined_resamples() -> None:
    # one positive in 20: many resamples draw no positive and micro-F1 is None there;
    # those are skipped, the rest still give an interval
    gold = [P] + [A] * 19
    pred = [P] + [A] * 19
    assert bootstrap_ci(micro_f1, gold, pred, n=200) == (1.0, 1.0)
    # never any positive: every resample is None -> None
    assert bootstrap_ci(micro_f1, [A] * 5, [A] * 5, n=50) is None
    assert bootstrap_ci(balanced_accuracy, [], [], n=50) is None


def test_bootstrap_of_a_numeric_rate() -> None:
    gold = [1.0, 2.0, None, 4.0]
    pred = [1.0, 3.0, None, 4.0]
    point = numeric_match(gold, pred)["exact"]  # 3 of 4
    ci = bootstrap_ci(lambda g, p: numeric_match(g, p)["exact"], gold, pred, n=300)
    assert ci is not None and ci[0] <= point <= ci[1]


# --- properties ----------------------------------------------------------------------


binary_pairs = st.lists(st.tuples(st.sampled_from([P, A]), st.sampled_from([P, A])), min_size=1, max_size=40)


@given(binary_pairs)
def test_binary_balanced_accuracy_is_mean_of_sensitivity_and_specificity(pairs) -> None:
    gold = [g for g, _ in pairs]
    pred = [p for _, p in pairs]
    sensitivity, specificity = sensitivity_specificity(gold, pred, positive=P)
    defined = [x for x in (sensitivity, specificity) if x is not None]
    value = balanced_accuracy(gold, pred)
    assert value is not None and 0.0 <= value <= 1.0
    assert math.isclose(value, sum(defined) / len(defined))
