"""Evaluation metrics for crit's answers against gold labels.

Pure functions over plain Python sequences (numpy only for the bootstrap), so the
arithmetic can be checked by hand. They fix what the paper's released code got wrong:
sensitivity and specificity were swapped there, and some metrics were degenerate
(e.g. a constant answer scored well on skewed data). Here:

- ``balanced_accuracy`` is the mean per-class recall over the classes present in gold
  (in the binary case, the mean of sensitivity and specificity), with "not mentioned"
  a class of its own when the question allows it;
- ``sensitivity_specificity`` is one-vs-rest around a named positive class;
- ``micro_f1`` pools tp/fp/fn over all boolean decisions (concatenate the questions);
- ``numeric_match`` scores numbers and missing values (None) together;
- ``bootstrap_ci`` gives a percentile interval for any of them.

Degenerate inputs return None instead of a misleading number; each function says when.
Sequences of unequal length are a programming error and raise ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import TypedDict, TypeVar

import numpy as np

T = TypeVar("T")


def _check_lengths(gold: Sequence[object], pred: Sequence[object]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} items but pred has {len(pred)}")


def accuracy(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float | None:
    """Fraction of exact matches; None for empty input.

    Reported for contrast only: on skewed data a constant answer scores high here
    while its balanced accuracy stays at 1 / (number of classes).
    """
    _check_lengths(gold, pred)
    if not gold:
        return None
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def balanced_accuracy(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None
) -> float | None:
    """Mean recall over the classes that occur in ``gold``.

    For each class c present in gold, recall(c) = #(gold == c and pred == c) / #(gold == c);
    the result is their unweighted mean. In the binary case this is
    (sensitivity + specificity) / 2. "not mentioned" is simply another class.

    - ``labels``: the answers the question allows (e.g. present / absent / not mentioned).
      A gold label outside them raises ValueError. A prediction outside them (an error
      row, a label never seen in gold) is kept and counts as wrong.
    - A class absent from gold has no recall and is not averaged: with gold all of one
      class the score is that class's recall alone (a constant guess of it scores 1.0).
    - Empty input returns None.
    """
    _check_lengths(gold, pred)
    if not gold:
        return None
    if labels is not None:
        unknown = sorted(set(gold) - set(labels))
        if unknown:
            raise ValueError(f"gold labels {unknown} are not among the allowed labels {list(labels)}")
    totals: dict[str, int] = {}
    hits: dict[str, int] = {}
    for g, p in zip(gold, pred):
        totals[g] = totals.get(g, 0) + 1
        hits[g] = hits.get(g, 0) + (g == p)
    return sum(hits[c] / totals[c] for c in totals) / len(totals)


def sensitivity_specificity(
    gold: Sequence[str], pred: Sequence[str], positive: str
) -> tuple[float | None, float | None]:
    """(sensitivity, specificity) treating ``positive`` against every other answer.

    sensitivity = tp / (tp + fn): of the gold positives, the fraction predicted positive.
    specificity = tn / (tn + fp): of the gold non-positives, the fraction *not* predicted
    positive (predicting "absent" for a gold "not mentioned" still counts as a true
    negative here; balanced_accuracy is the stricter, per-class view).
    Each is None when gold has no item on its side (no positives, or no negatives).
    """
    _check_lengths(gold, pred)
    tp = fn = tn = fp = 0
    for g, p in zip(gold, pred):
        if g == positive:
            if p == positive:
                tp += 1
            else:
                fn += 1
        elif p == positive:
            fp += 1
        else:
            tn += 1
    sensitivity = tp / (tp + fn) if tp + fn else None
    specificity = tn / (tn + fp) if tn + fp else None
    return sensitivity, specificity


def micro_f1(gold: Sequence[str], pred: Sequence[str], positive: str = "present") -> float | None:
    """Micro-F1 for the positive class over all decisions given.

    Pool questions by concatenating their gold and pred lists: tp, fp and fn are then
    summed over every (note, question) pair, and F1 = 2 tp / (2 tp + fp + fn).
    When neither gold nor pred holds a positive, tp = fp = fn = 0 and F1 is undefined:
    the function returns None (not 0, which would punish a correct "nothing here", nor 1).
    Empty input returns None for the same reason.
    """
    _check_lengths(gold, pred)
    tp = fp = fn = 0
    for g, p in zip(gold, pred):
        if p == positive and g == positive:
            tp += 1
        elif p == positive:
            fp += 1
        elif g == positive:
            fn += 1
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else None


class NumericMatch(TypedDict):
    """What ``numeric_match`` returns; rates are None when n == 0."""

    n: int
    exact: float | None
    within_tol: float | None
    na_agreement: float | None
    n_gold_stated: int
    n_pred_stated: int


def _is_missing(x: float | None) -> bool:
    # NaN (as pandas or DuckDB may hand over) means missing, like None.
    return x is None or (isinstance(x, float) and math.isnan(x))


def numeric_match(
    gold: Sequence[float | None],
    pred: Sequence[float | None],
    rel_tol: float = 0.05,
    abs_tol: float = 0.0,
) -> NumericMatch:
    """Agreement of numeric answers, missing values included.

    Each pair counts once in every rate (denominator n = number of pairs):
    - both missing (None or NaN): a match in all three rates;
    - one missing: a miss in all three rates;
    - both stated: ``exact`` if equal; ``within_tol`` if |pred - gold| <= max(rel_tol * |gold|,
      abs_tol), the tolerance being relative to the gold value; ``na_agreement`` is a match.
    So ``na_agreement`` measures only the stated/not-stated decision, and
    ``exact`` <= ``within_tol`` <= ``na_agreement``.
    """
    _check_lengths(gold, pred)
    if rel_tol < 0 or abs_tol < 0:
        raise ValueError("rel_tol and abs_tol must be >= 0")
    exact = within = na_agree = 0
    n_gold = n_pred = 0
    for g, p in zip(gold, pred):
        g_missing, p_missing = _is_missing(g), _is_missing(p)
        n_gold += not g_missing
        n_pred += not p_missing
        if g_missing and p_missing:
            exact += 1
            within += 1
            na_agree += 1
        elif not g_missing and not p_missing:
            na_agree += 1
            exact += g == p
            within += abs(p - g) <= max(rel_tol * abs(g), abs_tol)
    n = len(gold)
    return NumericMatch(
        n=n,
        exact=exact / n if n else None,
        within_tol=within / n if n else None,
        na_agreement=na_agree / n if n else None,
        n_gold_stated=n_gold,
        n_pred_stated=n_pred,
    )


def bootstrap_ci(
    metric_fn: Callable[[list[T], list[T]], float | None],
    gold: Sequence[T],
    pred: Sequence[T],
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval (1 - alpha) for ``metric_fn(gold, pred)``.

    Draws ``n`` resamples of the (gold, pred) pairs with replacement, keeping pairs
    together, and returns the alpha/2 and 1 - alpha/2 quantiles of the metric. Resamples
    where the metric is None (e.g. no positive drawn) are skipped; if all are, or the
    input is empty, the result is None. The same seed gives the same interval.
    For numeric_match, pass a function that picks one rate, e.g.
    ``lambda g, p: numeric_match(g, p)["within_tol"]``.
    """
    _check_lengths(gold, pred)
    if n < 1:
        raise ValueError("n must be >= 1")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be between 0 and 1")
    if not gold:
        return None
    gold_list, pred_list = list(gold), list(pred)
    rng = np.random.default_rng(seed)
    size = len(gold_list)
    values: list[float] = []
    for _ in range(n):
        idx = rng.integers(0, size, size=size)
        value = metric_fn([gold_list[i] for i in idx], [pred_list[i] for i in idx])
        if value is not None:
            values.append(value)
    if not values:
        return None
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
