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
    """``SUM_START + x[:, 0] + x[:, 1] + ...`` row-wise, added left to right (as a C loop).

    A slow, obviously ordered reference (a cumulative sum): the loss itself
    sums its transposed arrays with :func:`sequential_column_sums`.
    """
    n = x.shape[0]
    padded = xp.empty((n, x.shape[1] + 1), dtype=x.dtype)
    padded[:, 0] = SUM_START
    padded[:, 1:] = x
    return xp.cumsum(padded, axis=1)[:, -1]


def sequential_column_sums(xp, xt):
    """``SUM_START + xt[0] + xt[1] + ...`` of a C-contiguous ``(C, N)`` array: the sums of
    :func:`sequential_row_sums` of ``xt.T``, with their bits (one whole row of ``xt``
    added at a time, in order, into an accumulator that starts at ``SUM_START``)."""
    total = xp.full(xt.shape[1:], SUM_START, dtype=xt.dtype)
    for row in xt:
        total += row
    return total


def sequential_sums_in_place(xp, x, scratch):
    """:func:`sequential_row_sums` of ``x`` (C-contiguous ``(N, C)``, C > 1), through a cumulative
    sum into ``scratch`` (an array of ``x``'s shape); ``x``'s first column is borrowed and restored."""
    first = x[:, 0].copy()
    x[:, 0] += SUM_START  # SUM_START + x_0: the first step of the left-to-right sum
    xp.cumsum(x, axis=1, out=scratch)
    x[:, 0] = first
    return scratch[:, -1].copy()


#: Up to this many columns the loss runs on a transposed copy of the whole batch (a row's
#: reductions become reductions over whole rows of the copy); beyond it, rows are long
#: enough for numpy's row-wise reductions and the loss runs on blocks of rows that stay in
#: cache (at 32768x1000, a dozen full-size float64 passes cost more than the maths).
TRANSPOSE_COLUMNS = 256
#: Elements of one block of rows (512 KiB of float64).
BLOCK_ELEMENTS = 1 << 16


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
    grad_dtype="float64",
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
        grad_dtype: the dtype of the returned gradient (computed in float64,
            cast once).

    Returns:
        ``(grad, losses)``: the C-contiguous ``(N, C)`` gradient w.r.t. the
        logits (or None) and the float64 ``(N,)`` unnormalised losses.

    Layout: with up to :data:`TRANSPOSE_COLUMNS` columns the work runs on a
    transposed ``(C, N)`` float64 copy, where a row's max and left-to-right
    sum are reductions over whole rows of the copy (numpy's row-wise
    reductions over short rows cost ten times more at 4096x50); with more,
    on blocks of rows that stay in cache. Each element sees the same
    operations in either layout: the bits do not depend on it.
    """
    n, c = logits.shape
    if n == 0 or c == 0:
        grad = xp.zeros((n, c), dtype=grad_dtype) if want_grad else None
        return grad, xp.zeros((n,), dtype="float64")
    if all_gold is None:
        has_gold = acceptable.any(axis=1) if valid is None else acceptable.any(axis=1) & valid.any(axis=1)
        all_gold = bool(has_gold.all())  # one transfer; callers that know pass it
    settings = dict(gamma=gamma, divisor=divisor, want_grad=want_grad, all_gold=all_gold)
    if c <= TRANSPOSE_COLUMNS:
        z = logits.T.astype("float64", order="C")  # (C, N), our own copy
        cols = lambda a: None if a is None else xp.ascontiguousarray(a.T)  # noqa: E731
        grad, losses = _partial_label(
            xp, z, cols(acceptable), cols(valid), row_weights, axis=0, scratch=None, **settings
        )
        return (None if grad is None else grad.T.astype(grad_dtype, order="C")), losses
    grad = xp.empty((n, c), dtype=grad_dtype) if want_grad else None
    losses = xp.empty((n,), dtype="float64")
    step = max(1, BLOCK_ELEMENTS // c)
    scratch = xp.empty((min(step, n), c), dtype="float64")
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        part = lambda a: None if a is None else a[rows]  # noqa: E731
        block_grad, losses[rows] = _partial_label(
            xp, logits[rows].astype("float64"), acceptable[rows], part(valid), part(row_weights),
            axis=1, scratch=scratch[: rows.stop - rows.start], **settings
        )
        if block_grad is not None:
            grad[rows] = block_grad
    return grad, losses


def _partial_label(xp, z, gold, valid, row_weights, *, axis, scratch, gamma, divisor, want_grad, all_gold):
    """``(grad or None, losses)`` of :func:`partial_label_cross_entropy` on ``z``, our own
    float64 copy of the logits (overwritten), with the examples along ``axis`` 1 (rows of
    ``(N, C)``) or 0 (columns of a transposed ``(C, N)``); the gradient in ``z``'s layout."""
    along = (lambda v: v[None, :]) if axis == 0 else (lambda v: v[:, None])  # noqa: E731
    if valid is not None:
        z = xp.where(valid, z, -xp.inf)
        top = z.max(axis=axis)
        has_valid = top > -xp.inf
        has_gold = gold.any(axis=axis) & has_valid
        top = xp.where(has_valid, top, 0.0)
    else:
        top = z.max(axis=axis)
        has_gold = gold.any(axis=axis) if not all_gold else None
    gold_z = xp.where(gold, z, -xp.inf)
    gold_top = gold_z.max(axis=axis)
    if not all_gold:
        gold_top = xp.where(has_gold, gold_top, 0.0)
    z -= along(top)
    e = xp.exp(z, out=z)
    gold_z -= along(gold_top)
    if xp is numpy:  # exp only where it is needed: the acceptable entries are few
        gold_e = xp.exp(gold_z, out=xp.zeros(gold_z.shape, dtype=gold_z.dtype), where=gold)
    else:
        gold_e = xp.exp(gold_z, out=gold_z)  # 0 outside the acceptable set
    del gold_z
    if axis == 0:
        big_z, gold_big_z = sequential_column_sums(xp, e), sequential_column_sums(xp, gold_e)
    elif e.shape[1] == 1:
        big_z, gold_big_z = e[:, 0] + SUM_START, gold_e[:, 0] + SUM_START
    else:
        big_z, gold_big_z = sequential_sums_in_place(xp, e, scratch), sequential_sums_in_place(xp, gold_e, scratch)
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
    grad = xp.divide(e, along(big_z), out=e)
    gold_e /= along(gold_big_z)
    grad -= gold_e  # x - 0.0 == x outside the set: spaCy's two branches
    del gold_e
    if not all_gold:
        if axis == 0:
            grad[:, ~has_gold] = 0.0
        else:
            grad[~has_gold] = 0.0
    if factor is not None:
        grad *= along(factor)
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


__all__ = [
    "partial_label_cross_entropy",
    "row_weights_from_columns",
    "sequential_column_sums",
    "sequential_row_sums",
    "sequential_sums_in_place",
]
