"""Maths of the overlap losses, soft Dice and Tversky (sigmoid outputs): plain functions.

Same convention as :mod:`thinc_losses_plus.functional.sigmoid`: the array module
``xp`` first, then the guesses and the targets, then keyword-only settings and
``want_grad``; the result is ``(grad or None, losses)``. Nothing here checks
values, and nothing writes into an input.

:func:`soft_dice_loss` and :func:`tversky_loss` score *groups* of entries: each
row (``average="samples"``) or each column over the batch (``average="macro"``).
Both are a ratio ``E_g / (D_g + smooth)`` of two weighted sums over the group,
``E`` of the soft errors and ``D`` of the denominator terms, so the loss of a
group splits exactly into one share per row (``w e_i / (D_g + smooth)``,
non-negative); the functions return those shares as the per-example losses and
the gradient of their sum, times the rows' ``row_weights`` (``"samples"``) and
divided by ``divisor``. ``weights`` act *inside* the sums.

Memory (SPEC section 8): row blocks (:mod:`thinc_losses_plus.functional.blocks`),
every temporary of a block's size written with ``out=`` into scratch borrowed
from the gradient's rows still to be written: the peak of a call is the
gradient plus under 10% of it at 4096x50 and 32768x1000.
"""
import math

import numpy

from .blocks import (
    SMALL_ARRAY,
    clip_function,
    einsum_function,
    power_into,
    rows_of,
    scratch_blocks,
    small_ufunc_buffers,
)
from .sigmoid import PROB_EPS, exp_neg_abs, sigmoid_into
from .softmax import ones_vector


SAMPLES = "samples"
MACRO = "macro"
AVERAGES = (SAMPLES, MACRO)


# Soft Dice and Tversky (sigmoid outputs) ---------------------------------------------
#
# By row blocks of the gradient's buffer (:func:`~thinc_losses_plus.functional.blocks.scratch_blocks`):
# a block's values live in scratch borrowed from the gradient's rows still to be
# written and its group sums are einsum reductions (nothing of the block's size).
# ``"samples"`` is one pass, each row's sums made in its block. ``"macro"``'s column
# sums need the whole batch: a first pass writes the soft errors into the gradient's
# buffer (its column sums and the per-row shares are then one product each) and
# accumulates the denominators' column sums; a second pass recomputes what the
# gradient needs of each block (for logits, the sigmoid's slope: storing it would
# leave no rows to borrow scratch from) and writes its gradient. The group vectors
# multiply by broadcasting, with numpy's ufunc buffer made small for the call
# (:func:`small_ufunc_buffers`). The peak memory is the gradient plus about 5%.


def row_blocks(xp, work, n_slots: int):
    """:func:`~thinc_losses_plus.functional.blocks.scratch_blocks`, or for a small ``work``
    (:data:`SMALL_ARRAY`) one block with ``n_slots`` fresh scratch arrays."""
    if work.size <= SMALL_ARRAY:
        yield slice(0, work.shape[0]), [xp.empty_like(work) for _ in range(n_slots)]
        return
    yield from scratch_blocks(xp, work, n_slots)


def along(vector, average: str):
    """A group vector as a column (``"samples"``: one value per row) or a row (``"macro"``)."""
    return vector[:, None] if average == SAMPLES else vector[None, :]


def group_sum(xp, average: str, shape, *factors):
    """``sum(a * b * ...)`` over each row (``"samples"``, ``(rows,)``) or each column (``"macro"``, ``(C,)``)
    of a block of ``shape``: None factors are skipped, a factor of another shape is one weight
    per row (``(rows, 1)``). One array (or one and its row weights, for columns) is summed
    by a BLAS matrix-vector product, several by one einsum (neither allocates more than the result)."""
    full, per_row = [], []
    for f in factors:
        if f is not None:
            (full if tuple(f.shape) == tuple(shape) else per_row).append(f)
    if len(full) == 1 and not per_row:
        if average == SAMPLES:
            return full[0] @ ones_vector(xp, shape[1], full[0].dtype)
        return _ones(xp, shape[0], full[0].dtype) @ full[0]
    if len(full) == 1 and len(per_row) == 1 and average == MACRO:
        return per_row[0].reshape(-1) @ full[0]
    operands = full + [f.reshape(-1) for f in per_row]
    subscripts = ["ij"] * len(full) + ["i"] * len(per_row)
    return einsum_function(xp)(",".join(subscripts) + ("->i" if average == SAMPLES else "->j"), *operands)


def _ones(xp, n: int, dtype):
    """``n`` ones: the first entries of a cached vector of ones whose length is a power of two
    (blocks of many row counts share a few cached vectors)."""
    return ones_vector(xp, 1 << max(0, int(n) - 1).bit_length(), dtype)[:n]


def logistic_slope(xp, x, out, buf):
    """``s'(x) = s(x) s(-x) = e / (1 + e)^2`` with ``e = exp(-|x|)``, into ``out`` (``buf`` used
    on the way): finite and with full relative precision for any ``x``."""
    e = exp_neg_abs(xp, x, out=out)
    u = xp.add(e, 1.0, out=buf)
    u *= u
    e /= u
    return e


def scored_probabilities(xp, x, *, from_logits: bool, self_adjusting: float, p_out, exp_out, want_chain: bool, take, give):
    """``(q, dq/dx or None)`` of a block: ``q = (1 - p)^a p`` (``q = p`` for ``a = 0``), ``p = s(x)``
    written into ``p_out`` for logits (``exp_out``, or a slot, used on the way), else ``p = x``;
    other values in slots of the free list (``take``, ``give``).

    For probabilities ``dq/dp = (1 - p)^(a - 1) (1 - (1 + a) p)``; for
    ``0 < a < 1`` it is infinite at ``p = 1`` and is evaluated at
    ``1 - p >= 1e-7`` (``PROB_EPS``). For logits ``dq/dx = q (1 - (1 + a) p)``
    (``p (1 - p)`` for ``a = 0``), finite everywhere.
    """
    a = self_adjusting
    if from_logits:  # s(x) = exp(min(x, 0)) / (1 + exp(-|x|)), without overflow or cancellation
        e = exp_neg_abs(xp, x, out=take() if exp_out is None else exp_out)
        p = sigmoid_into(xp, p_out, x, e)
        if exp_out is None:
            give(e)
    else:
        p = x
    if not a:
        chain = None
        if from_logits and want_chain:
            chain = xp.subtract(1.0, p, out=take())
            chain *= p
        return p, chain
    omp = xp.subtract(1.0, p, out=take())
    factor = None
    if want_chain and not from_logits and a != 1.0:  # (1 - p)^(a - 1)
        if a > 1.0:
            factor = power_into(xp, omp, a - 1.0, take())
        else:
            factor = clip_function(xp)(omp, PROB_EPS, math.inf, out=take())
            xp.power(factor, a - 1.0, out=factor)
    q = power_into(xp, omp, a, take())
    q *= p
    if not want_chain:
        give(omp)
        return q, None
    chain = xp.multiply(p, -(1.0 + a), out=omp)  # 1 - p is not needed again
    chain += 1.0
    if from_logits:
        chain *= q
    elif factor is not None:
        chain *= factor
        give(factor)
    return q, chain


class _OverlapMaths:
    """What a soft overlap loss computes per entry: its soft errors ``e``, the sums of its
    denominator ``D`` and its gradient (see :func:`soft_dice_loss`, :func:`tversky_loss`)."""

    self_adjusting = 0.0
    uses_q = False  # the gradient (before dq/dx) reads q, not only t

    def errors(self, xp, q, t, out):
        raise NotImplementedError

    def denominator(self, xp, average, q, t, w, with_targets: bool = True):
        """The denominator's sums of the group (without the targets' own part unless ``with_targets``)."""
        raise NotImplementedError

    def targets_denominator(self, xp, average, t, w):
        """The part of the denominator's sums that only depends on the targets, or None."""
        raise NotImplementedError

    def grad_vectors(self, group, inverse, scale):
        """``(A, B)``: per group, the gradient before ``w dq/dx`` is ``t A + B`` (``uses_q``:
        ``(q A - t) B``); ``scale`` (None, a number or one per row) multiplies it."""
        raise NotImplementedError

    def linear_grad(self, xp, out, q, t, vectors, average):
        vec_a, vec_b = vectors
        if self.uses_q:
            xp.multiply(q, along(vec_a, average), out=out)
            out -= t
            out *= along(vec_b, average)
        else:
            xp.multiply(t, along(vec_a, average), out=out)
            out += along(vec_b, average)
        return out


def _times(vector, scale):
    return vector if scale is None else vector * scale


class _DiceMaths(_OverlapMaths):
    def __init__(self, squared: bool, self_adjusting: float):
        self.squared, self.self_adjusting = squared, self_adjusting
        self.uses_q = squared

    def errors(self, xp, q, t, out):
        if self.squared:
            e = xp.subtract(q, t, out=out)
            e *= e  # (q - t)^2
            return e
        e = xp.multiply(t, -2.0, out=out)
        e += 1.0
        e *= q
        e += t  # q + t - 2 q t
        return e

    def denominator(self, xp, average, q, t, w, with_targets: bool = True):
        shape = q.shape
        union = group_sum(xp, average, shape, q, q if self.squared else None, w)
        if with_targets:
            union += self.targets_denominator(xp, average, t, w)
        return union

    def targets_denominator(self, xp, average, t, w):
        return group_sum(xp, average, t.shape, t, t if self.squared else None, w)

    def grad_vectors(self, group, inverse, scale):
        # dL/dq = w ((1 - L) - 2 t) / (U + s); squared: 2 w ((1 - L) q - t) / (U + s)
        keep = 1.0 - group
        if self.squared:
            return keep, _times(2.0 * inverse, scale)
        return _times(-2.0 * inverse, scale), _times(keep * inverse, scale)


class _TverskyMaths(_OverlapMaths):
    def __init__(self, alpha: float, beta: float):
        self.alpha, self.beta = alpha, beta

    def errors(self, xp, p, t, out):
        # e = alpha p (1 - t) + beta (1 - p) t = p (alpha - (alpha + beta) t) + beta t
        alpha, beta = self.alpha, self.beta
        e = xp.multiply(t, -(alpha + beta) / beta if beta else -alpha, out=out)
        e += alpha / beta if beta else alpha
        e *= p
        if beta:
            e += t
            e *= beta
        return e

    def denominator(self, xp, average, p, t, w, with_targets: bool = True):
        return group_sum(xp, average, p.shape, p, t, w)  # TP; E is added once summed

    def targets_denominator(self, xp, average, t, w):
        return None

    def grad_vectors(self, group, inverse, scale):
        # dL/dp = w (alpha (1 - L) - t (alpha + beta + L (1 - alpha - beta))) / (D + s)
        alpha, beta = self.alpha, self.beta
        vec_a = -((alpha + beta) + group * (1.0 - alpha - beta)) * inverse
        return _times(vec_a, scale), _times((alpha * (1.0 - group)) * inverse, scale)


def overlap_slots(from_logits: bool, self_adjusting: float, average: str, step: int) -> int:
    """Scratch arrays a block of :func:`overlap_loss` holds at once: ``step`` 0 for ``"samples"``'
    one pass, 1 and 2 for ``"macro"``'s passes."""
    if self_adjusting:
        return 3 if (step != 1 or from_logits) else 2
    if not from_logits:
        return 0 if step == 0 else 1
    return 2 if step == 0 else 1


def overlap_loss(
    xp, maths: _OverlapMaths, guesses, targets, *, smooth: float, average: str, from_logits: bool,
    weights=None, row_weights=None, divisor: float = 1, want_grad: bool = True,
):
    """``(grad or None, per-row losses)`` of a ratio loss ``L_g = E_g / (D_g + s)`` of each row or
    column, by row blocks (see the section's comment).

    ``weights`` (None, or one per element or per row) act inside the sums.
    ``row_weights`` (None or ``(N, 1)``, ``"samples"`` only) are the rows'
    multiplicities: the per-row losses and the gradient are times them. The
    gradient is divided by ``divisor``.
    """
    if weights is not None and weights.shape[0] != guesses.shape[0]:
        weights = xp.broadcast_to(weights, guesses.shape)
    with small_ufunc_buffers(xp):
        run = _overlap_samples if average == SAMPLES else _overlap_macro
        return run(
            xp, maths, guesses, targets, smooth=smooth, from_logits=from_logits, weights=weights,
            row_weights=row_weights, divisor=divisor, want_grad=want_grad,
        )


def _overlap_samples(xp, maths, guesses, targets, *, smooth, from_logits, weights, row_weights, divisor, want_grad):
    """:func:`overlap_loss` of each row: one pass."""
    work = xp.empty(guesses.shape, dtype=guesses.dtype)  # the gradient (a scratch for get_loss)
    per_example = xp.empty(guesses.shape[:1], dtype=guesses.dtype)
    a = maths.self_adjusting
    tversky = isinstance(maths, _TverskyMaths)
    # (probabilities, a = 0: no scratch, but a large batch still in the blocks of one slot,
    # so that the (rows,) arrays of a block stay small)
    n_slots = overlap_slots(from_logits, a, SAMPLES, 0) or (1 if work.size > SMALL_ARRAY else 0)
    for rows, scratch in row_blocks(xp, work, n_slots):
        take, give = scratch.pop, scratch.append
        t, w, out = targets[rows], rows_of(weights, rows), work[rows]
        # logits: p in a slot (a = 0; its slope goes into the gradient's block) or the block
        p_out = (take() if not a else out) if from_logits else None
        q, chain = scored_probabilities(
            xp, guesses[rows], from_logits=from_logits, self_adjusting=a, p_out=p_out,
            exp_out=out if (from_logits and not a) else None, want_chain=want_grad and bool(a), take=take, give=give,
        )
        # the soft errors: for probabilities (a = 0) in the gradient's block, written last
        e = maths.errors(xp, q, t, out if (not from_logits and not a) else take())
        total = group_sum(xp, SAMPLES, e.shape, e, w)
        inverse = maths.denominator(xp, SAMPLES, q, t, w)
        if tversky:
            inverse += total
        inverse += smooth
        xp.divide(1.0, inverse, out=inverse)
        group = xp.multiply(total, inverse, out=total)
        rw = None if row_weights is None else row_weights[rows].reshape(-1)
        if rw is None:
            per_example[rows] = group
        else:
            xp.multiply(group, rw, out=per_example[rows])
        if not want_grad:
            continue
        scale = rw if divisor == 1 else (1.0 / divisor if rw is None else rw / divisor)
        vectors = maths.grad_vectors(group, inverse, scale)
        if from_logits and not a:  # the slope p (1 - p) in the gradient's block, the rest in e's slot
            chain = xp.subtract(1.0, q, out=out)
            chain *= q
            chain *= maths.linear_grad(xp, e, q, t, vectors, SAMPLES)
        else:  # the block of p (logits, a > 0) is free: q and dq/dx are made
            maths.linear_grad(xp, out, q, t, vectors, SAMPLES)
            if chain is not None:
                out *= chain
        if w is not None:
            out *= w
    return (work if want_grad else None), per_example


def _overlap_macro(xp, maths, guesses, targets, *, smooth, from_logits, weights, row_weights, divisor, want_grad):
    """:func:`overlap_loss` of each column: the column sums first, then the gradient and the shares."""
    shape, a = guesses.shape, maths.self_adjusting
    work = xp.empty(shape, dtype=guesses.dtype)  # the soft errors, then the gradient
    if not from_logits and not a:  # q = p: the guesses themselves
        maths.errors(xp, guesses, targets, work)
        denominator = maths.denominator(xp, MACRO, guesses, targets, weights)
    else:
        denominator = _macro_errors(xp, maths, guesses, targets, work, weights, from_logits)
    total = group_sum(xp, MACRO, shape, work, weights)
    if isinstance(maths, _TverskyMaths):
        denominator += total
    denominator += smooth
    inverse = xp.divide(1.0, denominator, out=denominator)
    group = xp.multiply(total, inverse, out=total)
    # row i's share of sum_c L_c: sum_c w e_ic / (D_c + s)
    per_example = xp.empty(shape[:1], dtype=guesses.dtype)
    if weights is None:
        xp.matmul(work, inverse, out=per_example)
    elif weights.shape == shape:
        if xp is numpy:
            einsum_function(xp)("ij,ij,j->i", work, weights, inverse, out=per_example)
        else:  # cupy's einsum takes no out
            per_example[...] = xp.einsum("ij,ij,j->i", work, weights, inverse)
    else:
        xp.matmul(work, inverse, out=per_example)
        per_example *= weights.reshape(-1)
    if not want_grad:
        return None, per_example
    vectors = maths.grad_vectors(group, inverse, None if divisor == 1 else 1.0 / divisor)
    if not from_logits and not a:  # nothing but the gradient is needed: whole-array products
        maths.linear_grad(xp, work, guesses, targets, vectors, MACRO)
        if weights is not None:
            work *= weights
        return work, per_example
    for rows, scratch in row_blocks(xp, work, overlap_slots(from_logits, a, MACRO, 2)):
        take, give = scratch.pop, scratch.append
        t, w, out, x = targets[rows], rows_of(weights, rows), work[rows], guesses[rows]
        if from_logits and not a and not maths.uses_q:  # only the slope is needed
            q, chain = None, logistic_slope(xp, x, take(), out)
        else:
            q, chain = scored_probabilities(
                xp, x, from_logits=from_logits, self_adjusting=a, p_out=out, exp_out=None, want_chain=True,
                take=take, give=give,
            )
        maths.linear_grad(xp, out, q, t, vectors, MACRO)
        out *= chain
        if w is not None:
            out *= w
    return work, per_example


def _macro_errors(xp, maths, guesses, targets, work, weights, from_logits):
    """``"macro"``'s first pass: the soft errors into ``work`` (q in scratch), block by block;
    returns the denominators' column sums. (A function of its own: the last blocks'
    scratch buffers are freed when it returns.)"""
    a = maths.self_adjusting
    denominator = xp.zeros(guesses.shape[1:], dtype=guesses.dtype)
    for rows, scratch in row_blocks(xp, work, overlap_slots(from_logits, a, MACRO, 1)):
        take, give = scratch.pop, scratch.append
        t, w, out = targets[rows], rows_of(weights, rows), work[rows]
        q, _ = scored_probabilities(
            xp, guesses[rows], from_logits=from_logits, self_adjusting=a, p_out=take() if from_logits else None,
            exp_out=out if from_logits else None, want_chain=False, take=take, give=give,
        )
        maths.errors(xp, q, t, out)
        denominator += maths.denominator(xp, MACRO, q, t, w, with_targets=False)
    of_targets = maths.targets_denominator(xp, MACRO, targets, weights)
    if of_targets is not None:
        denominator += of_targets
    return denominator


def soft_dice_loss(
    xp,
    guesses,
    targets,
    *,
    smooth: float = 1.0,
    average: str = SAMPLES,
    squared_denominator: bool = False,
    self_adjusting: float = 0.0,
    from_logits: bool = False,
    weights=None,
    row_weights=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Soft Dice loss ``1 - (2 I + s) / (U + s)`` of each row or each column.

    ``q = (1 - p)^a p`` (``a = self_adjusting``; ``q = p`` for 0), ``t`` the
    targets, ``s = smooth``, ``w`` the ``weights`` (None, or broadcastable
    to the guesses); over a group (a row, or a column for
    ``average="macro"``), ``I = sum w q t`` and ``U = sum w (q + t)`` (or
    ``sum w (q^2 + t^2)`` with ``squared_denominator``). Written as
    ``L = E / (U + s)`` with ``E = U - 2 I``, the sum of the soft errors
    ``w (q + t - 2 q t)`` (``w (q - t)^2``), the loss of a column splits into
    non-negative per-row shares ``w e / (U + s)``. Gradient::

        dL/dq = w ((1 - L) - 2 t) / (U + s)            (squared: 2 w ((1 - L) q - t) / (U + s))

    times ``dq/dguesses``: with respect to the probabilities ``p``, or the
    logits with ``from_logits`` (``p = s(x)``), times ``row_weights``
    (``"samples"``: the rows' multiplicities, which also multiply the
    per-row losses) and divided by ``divisor``.

    Returns ``(grad or None, per-row losses (N,))``. Memory: by row blocks
    (:func:`overlap_loss`), the gradient plus about 5%.

    >>> import numpy
    >>> grad, loss = soft_dice_loss(numpy, numpy.asarray([[0.8, 0.2]]), numpy.asarray([[1.0, 0.0]]), smooth=1.0)
    >>> round(float(loss[0]), 4)  # 1 - (2 * 0.8 + 1) / (1.0 + 1.0 + 1)
    0.1333
    """
    return overlap_loss(
        xp, _DiceMaths(squared_denominator, self_adjusting), guesses, targets, smooth=smooth, average=average,
        from_logits=from_logits, weights=weights, row_weights=row_weights, divisor=divisor, want_grad=want_grad,
    )


def tversky_loss(
    xp,
    guesses,
    targets,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1.0,
    average: str = SAMPLES,
    from_logits: bool = False,
    weights=None,
    row_weights=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Tversky loss ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` of each row or column.

    Over a group, ``TP = sum w p t``, ``FP = sum w p (1 - t)`` and
    ``FN = sum w (1 - p) t``; written as ``L = E / (D + s)`` with
    ``E = alpha FP + beta FN`` and ``D = TP + E``, it splits into per-row
    shares (as :func:`soft_dice_loss`). ``alpha = beta = 0.5`` is the soft
    Dice loss with smooth ``2 s``. Gradient::

        dL/dp = w (alpha (1 - L) - t (alpha + beta + L (1 - alpha - beta))) / (D + s)

    with respect to the probabilities ``p``, or (times ``s'(x)``) the logits
    with ``from_logits``, times ``row_weights`` and divided by ``divisor`` (as
    :func:`soft_dice_loss`).

    Returns ``(grad or None, per-row losses (N,))``. Memory: as :func:`soft_dice_loss`.

    >>> import numpy
    >>> grad, loss = tversky_loss(numpy, numpy.asarray([[0.8, 0.2]]), numpy.asarray([[1.0, 0.0]]), smooth=0.0)
    >>> round(float(loss[0]), 4)  # (0.3 * 0.2 + 0.7 * 0.2) / (0.8 + 0.3 * 0.2 + 0.7 * 0.2)
    0.2
    """
    return overlap_loss(
        xp, _TverskyMaths(alpha, beta), guesses, targets, smooth=smooth, average=average, from_logits=from_logits,
        weights=weights, row_weights=row_weights, divisor=divisor, want_grad=want_grad,
    )
