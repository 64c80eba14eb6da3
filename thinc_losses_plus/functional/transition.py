"""Maths of the partial-label cross-entropy: every class of a set is a correct answer.

Same convention as :mod:`thinc_losses_plus.functional.softmax`: the array
module ``xp`` first, then the guesses and the targets, then keyword-only
settings; the result is ``(gradient / divisor or None, per-row losses)``.

For a row of logits ``z`` with acceptable set ``A`` (and valid set ``V``,
the columns that take part in the softmax)::

    p    = softmax over V of z          q = softmax over A of z
    P_A  = sum_{a in A} p_a
    loss = -w * (1 - P_A)^gamma * log P_A
    dL/dz = w * f * (p - q),   f = (1 - P_A)^gamma + gamma (1 - P_A)^(gamma-1) P_A (-log P_A)

(``f = 1`` for ``gamma = 0``: ``p - q`` is the gradient of ``-log P_A``.)
Invalid columns get gradient 0; rows without an acceptable column give 0.

The default (``gamma = 0``, no weights, no divisor) is computed exactly as
spaCy's ``cpu_log_loss`` (``spacy/ml/parser_model.pyx``): in float64, with
``Z = 1e-10 + sum_i exp(z_i - max z)`` and ``gZ = 1e-10 + sum_A exp(z_a - max_A z)``
summed left to right (a cumulative sum, not numpy's pairwise sum), so that
its float32 result has the same bits as spaCy's own gradient.
"""
from typing import Optional

import numpy

#: spaCy's ``cpu_log_loss`` starts both sums at 1e-10.
SUM_START = 1e-10


def sequential_row_sums(xp, x):
    """``SUM_START + x[:, 0] + x[:, 1] + ...`` row-wise, added left to right (as a C loop)."""
    n = x.shape[0]
    padded = xp.empty((n, x.shape[1] + 1), dtype=x.dtype)
    padded[:, 0] = SUM_START
    padded[:, 1:] = x
    return xp.cumsum(padded, axis=1)[:, -1]


def partial_label_cross_entropy(
    xp,
    logits,
    acceptable,
    *,
    valid=None,
    row_weights=None,
    gamma: float = 0.0,
    divisor: float = 1,
    want_grad: bool = True,
    all_gold: Optional[bool] = None,
):
    """Cross-entropy of the softmax of ``logits`` against a set of acceptable columns.

    Args:
        xp: the array module of the inputs.
        logits: ``(N, C)`` floats (any float dtype; computed in float64).
        acceptable: ``(N, C)`` bool, the correct answers of each row.
        valid: ``(N, C)`` bool or None (all valid): columns outside it are
            left out of the softmax (gradient 0).
        row_weights: ``(N,)`` float64 weights (class times sample weights) or None.
        gamma: focal exponent (0: the cross-entropy).
        divisor: the gradient is divided by it.
        want_grad: compute the gradient (else ``None``).
        all_gold: whether every row has an acceptable (valid) column, if the
            caller knows (saves a device-to-host transfer).

    Returns:
        ``(grad, losses)``: the float64 ``(N, C)`` gradient w.r.t. the logits
        (or None) and the float64 ``(N,)`` unnormalised losses.
    """
    n, c = logits.shape
    if n == 0 or c == 0:
        grad = xp.zeros((n, c), dtype="float64") if want_grad else None
        return grad, xp.zeros((n,), dtype="float64")
    z = logits.astype("float64")
    if valid is not None:
        z = xp.where(valid, z, -xp.inf)
        top = z.max(axis=1)
        has_valid = top > -xp.inf
        has_gold = acceptable.any(axis=1) & has_valid
        top = xp.where(has_valid, top, 0.0)
    else:
        top = z.max(axis=1)
        has_gold = acceptable.any(axis=1)
    if all_gold is None:
        all_gold = bool(has_gold.all())  # one transfer; callers that know pass it
    gold_z = xp.where(acceptable, z, -xp.inf)
    gold_top = gold_z.max(axis=1)
    if not all_gold:
        gold_top = xp.where(has_gold, gold_top, 0.0)
    z -= top[:, None]  # z is our own float64 copy
    e = xp.exp(z, out=z)
    gold_z -= gold_top[:, None]
    if xp is numpy:  # exp only where it is needed: the acceptable entries are few
        gold_e = xp.exp(gold_z, out=xp.zeros_like(gold_z), where=acceptable)
    else:
        gold_e = xp.exp(gold_z, out=gold_z)  # 0 outside the acceptable set
    big_z = sequential_row_sums(xp, e)
    gold_big_z = sequential_row_sums(xp, gold_e)
    # -log P_A = log Z + max z - log gZ - max_A z (>= 0 up to the 1e-10 terms)
    losses = xp.log(big_z) + top - xp.log(gold_big_z) - gold_top
    xp.maximum(losses, 0.0, out=losses)
    if not all_gold:
        losses[~has_gold] = 0.0
    factor = None
    if gamma:
        one_minus = -xp.expm1(-losses)  # 1 - P_A, accurate near P_A = 1
        modulating = one_minus**gamma
        with_loss = losses > 0
        safe = xp.where(with_loss, one_minus, 1.0)
        factor = modulating + xp.where(with_loss, gamma * safe ** (gamma - 1.0) * (1.0 - one_minus) * losses, 0.0)
        losses = modulating * losses
    if row_weights is not None:
        losses = losses * row_weights
        factor = row_weights if factor is None else factor * row_weights
    if not want_grad:
        return None, losses
    grad = xp.divide(e, big_z[:, None], out=e)
    gold_e /= gold_big_z[:, None]
    grad -= gold_e  # x - 0.0 == x outside the set: spaCy's two branches
    if not all_gold:
        grad[~has_gold] = 0.0
    if factor is not None:
        grad *= factor[:, None]
    if divisor != 1:
        grad /= divisor
    return grad, losses


def row_weights_from_columns(xp, acceptable, column_weights, column_keys, missing_weight: float):
    """One weight per row from per-column weights and labels.

    A row whose acceptable columns all belong to one label (``column_keys``,
    an ``(C,)`` int array) weighs what its first acceptable column weighs;
    a row whose acceptable columns span several labels (an unannotated
    token: every action is correct) weighs ``missing_weight``.
    """
    n, c = acceptable.shape
    big = c + 1
    keys = xp.where(acceptable, column_keys[None, :], big)
    low = keys.min(axis=1)
    high = xp.where(acceptable, column_keys[None, :], -1).max(axis=1)
    first = xp.argmax(acceptable, axis=1)
    shared = column_weights[first]
    return xp.where(low == high, shared, missing_weight)


__all__ = ["partial_label_cross_entropy", "row_weights_from_columns", "sequential_row_sums"]
