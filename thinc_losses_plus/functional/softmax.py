"""Maths of the softmax family: plain functions, no settings, no truth parsing.

Every function takes the array module ``xp`` of its inputs first (as Thinc's
``ops``), then the guesses and the targets, then keyword-only settings, and
returns the gradient (already divided by ``divisor``, or ``None`` when ``want_grad`` is
false) together with the unnormalised loss of each row. Guesses are either
probabilities ``p`` (rows of a softmax) or, with ``from_logits``, the logits
``z``; in both cases the gradient is taken with respect to the logits
(``span``, the range ``max(z) - min(z)`` of logits known to the caller,
lets the softmax use one shift for the whole batch):

    dL/dz_j = p_j * S - w_j * t_j,     S = sum_c w_c * t_c

which is ``p - t`` for unweighted targets that sum to one (the v4 formula,
computed literally as ``(p - t) / n`` so that the bits match Thinc's).

Memory: the sparse path allocates the gradient once and nothing else of
its size; row-wise sums of ``log p`` are taken in blocks of rows.
"""
from typing import Optional

import numpy

from .._core import divide_by
from .blocks import small_ufunc_buffers

#: Guard inside the logarithm of probability guesses: log(p + 1e-9), as Thinc v4.
EPS = 1e-9
#: Elements per block when a row-wise reduction needs a temporary.
BLOCK_ELEMENTS = 1 << 15  # 128 KiB of float32: cache-resident, 1.06x the gradient at 4096x50


def row_blocks(n_rows: int, n_cols: int, max_blocks: Optional[int] = None):
    """Slices of rows of about BLOCK_ELEMENTS elements (or, with ``max_blocks``, of
    about 1 / max_blocks of the rows, whichever is smaller)."""
    step = max(1, BLOCK_ELEMENTS // max(n_cols, 1))
    if max_blocks:
        step = max(1, min(step, -(-n_rows // max_blocks)))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def row_sums(xp, x):
    """Sums over the last axis as a matrix-vector product.

    numpy's ``x.sum(axis=1)`` walks short rows one at a time and costs ten
    times a copy on a (4096, 50) batch; BLAS does the same sum at memory speed.
    """
    return x @ ones_vector(xp, x.shape[1], x.dtype)


_ONES = {}


def ones_vector(xp, n: int, dtype):
    """A read-only ``(n,)`` vector of ones; numpy's are cached (one per width and dtype), a
    cupy one is made on the current device each call."""
    if xp is not numpy:
        return xp.ones((n,), dtype=dtype)
    key = (n, numpy.dtype(dtype).str)
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) > 64:
            _ONES.clear()
        ones = _ONES[key] = numpy.ones((n,), dtype=dtype)
        ones.flags.writeable = False
    return ones


#: Largest logit range for which one shift for the whole batch is safe:
#: exp(-range) stays a normal number (float32: exp(-87) ~ 1.6e-38).
SAFE_RANGE = {4: 80.0, 8: 700.0}


def softmax_and_lse(xp, logits, *, scale: float = 1.0, span: Optional[float] = None, overwrite: bool = False):
    """Return ``(softmax(z) * scale, logsumexp(z))`` row-wise; the softmax is a fresh array
    (with ``overwrite``, ``logits`` itself, a scratch array of the caller's, overwritten).

    Any per-row shift gives the same softmax. When the whole batch spans
    (``span = max(z) - min(z)``, known to the caller from its checks) less
    than ``SAFE_RANGE``, one global shift (the batch max) is exact enough
    and avoids numpy's slow per-row max over short rows; otherwise, or when
    ``span`` is None, each row is shifted by its own max.
    """
    if logits.size == 0:
        return xp.zeros(logits.shape, dtype=logits.dtype), xp.zeros(logits.shape[:1], dtype=logits.dtype)
    if span is not None and span < SAFE_RANGE[logits.dtype.itemsize]:
        shift = logits.max()
    else:
        shift = logits.max(axis=1, keepdims=True)
    probs = xp.subtract(logits, shift, out=logits if overwrite else None)
    xp.exp(probs, out=probs)
    sums = row_sums(xp, probs)
    lse = xp.log(sums)
    lse += shift if shift.ndim == 0 else shift[:, 0]
    scale_rows(xp, probs, xp.divide(scale, sums, out=sums), out=probs)
    return probs, lse


def scale_rows(xp, x, v, *, out):
    """``out = x * v[:, None]``, the same bits either way (``out`` may be ``x``).

    numpy's broadcasting multiply allocates an iteration buffer of up to
    ``getbufsize()`` (8192) elements: all of ``x`` at 256x10, 32 KiB at
    4096x50. Into a separate ``out`` its ``einsum`` computes the same products
    without one; in place (where einsum would copy ``x``) an array smaller
    than the buffer is scaled under a buffer of :data:`SMALL_BUFSIZE` elements
    (larger arrays keep numpy's: a smaller one costs them time).
    """
    if xp is numpy:
        if out is not x:
            return numpy.einsum("ij,i->ij", x, v, out=out)
        if x.size < numpy.getbufsize():
            with small_ufunc_buffers(xp, SMALL_BUFSIZE):
                return numpy.multiply(x, v[:, None], out=out)
    return xp.multiply(x, v[:, None], out=out)


#: numpy's ufunc buffer (elements) while an array smaller than the default one is scaled in place.
SMALL_BUFSIZE = 256


def rowwise_weighted_log_sum(xp, guesses, weights, *, lse=None):
    """sum_c w_c * log p_c for each row, without a full-size temporary.

    ``log p`` is ``log(p + EPS)`` for probabilities, or ``z - lse`` for logits
    (when ``lse`` is given). ``weights`` is None (all ones), ``(1, C)`` or ``(N, C)``.
    """
    n, c = guesses.shape
    if lse is not None:  # logits: sum_c w_c z_c - lse * sum_c w_c, no log needed
        if weights is None:
            return row_sums(xp, guesses) - c * lse
        if weights.shape[0] == 1:
            return guesses @ weights[0] - lse * weights.sum()
    out = xp.empty((n,), dtype=guesses.dtype)
    for rows in row_blocks(n, c):
        block = guesses[rows] - lse[rows, None] if lse is not None else xp.log(guesses[rows] + EPS)
        if weights is not None:
            block *= weights if weights.shape[0] == 1 else weights[rows]
        out[rows] = row_sums(xp, block)
    return out


def rowwise_target_log_sum(xp, guesses, target, weights, *, lse=None):
    """sum_c w_c * t_c * log p_c for each row (dense targets), in blocks."""
    n, c = guesses.shape
    out = xp.empty((n,), dtype=guesses.dtype)
    for rows in row_blocks(n, c):
        block = guesses[rows] - lse[rows, None] if lse is not None else xp.log(guesses[rows] + EPS)
        block *= target[rows]
        if weights is not None:
            block *= weights if weights.shape[0] == 1 else weights[rows]
        out[rows] = row_sums(xp, block)
    return out


_ROW_STARTS = {}


def row_starts(xp, n: int, c: int):
    """The flat index ``i * c`` of each row's first entry, ``(n,)`` int64; numpy's are cached
    (read-only), a cupy one is made on the current device each call."""
    if xp is not numpy:
        return xp.arange(0, n * c, c, dtype="int64")
    key = (n, c)
    starts = _ROW_STARTS.get(key)
    if starts is None:
        if len(_ROW_STARTS) > 64:
            _ROW_STARTS.clear()
        starts = _ROW_STARTS[key] = numpy.arange(0, n * c, c, dtype="int64")
        starts.flags.writeable = False
    return starts


def split_weights(weights):
    """Split combined weights into (per-row (N, 1), per-element) parts."""
    if weights is None:
        return None, None
    if weights.shape[1] == 1:
        return weights, None
    return None, weights


def softmax_cross_entropy_with_integer_labels(
    xp,
    guesses,
    labels,
    *,
    from_logits: bool = False,
    span: Optional[float] = None,
    label_smoothing: float = 0.0,
    weights=None,
    missing=None,
    negative=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Cross-entropy of softmax outputs against integer labels.

    Target rows put ``1 - e`` on the label and ``e / (C - 1)`` elsewhere.
    ``weights`` (broadcastable to (N, C): class weights times sample weights)
    weight each term ``-w_c t_c log p_c``. ``missing`` rows are masked;
    ``negative`` rows mean "not labels[i]": every column but the label is
    masked and the label's target is 0 (gradient ``w * p``, loss 0, as Thinc).

    The unweighted path reads the guesses twice, writes the gradient once and
    allocates nothing else of its size; label entries are reached through
    flat indices ``i * C + y``.
    """
    n, c = guesses.shape
    on = 1.0 - label_smoothing
    off = label_smoothing / (c - 1) if label_smoothing else 0.0
    row_w, elem_w = split_weights(weights)
    lse = None
    if from_logits:
        # The softmax buffer becomes the gradient; on the unweighted path the
        # division by n is folded into its normalisation.
        scale = 1.0 / divisor if (want_grad and elem_w is None) else 1.0
        probs, lse = softmax_and_lse(xp, guesses, scale=scale, span=span)
    # Flat indices i * C + y_i of the labelled entries (made after the softmax,
    # whose temporaries then no longer coexist with them: peak memory).
    flat = xp.arange(0, n * c, c)
    flat += labels
    if from_logits:
        log_gold = guesses.reshape(-1)[flat]
        log_gold -= lse
        if not off:
            lse = None  # only smoothing needs it again; freeing it now lowers the peak memory
        gold_p = probs.reshape(-1)[flat]  # p_y * scale
    else:
        probs = guesses
        gold_p = guesses.reshape(-1)[flat]
        log_gold = xp.log(gold_p + EPS)
    # Row loss: -(on - off) * w_y * log p_y - off * sum_c w_c log p_c
    if elem_w is None:
        if off:
            losses = -(on - off) * log_gold - off * rowwise_weighted_log_sum(xp, guesses, None, lse=lse)
        else:
            losses = xp.negative(log_gold, out=log_gold)
    else:
        elem_w = xp.broadcast_to(elem_w, (n, c))
        gold_w = elem_w[xp.arange(n), labels]
        losses = -(on - off) * gold_w * log_gold
        if off:
            losses -= off * rowwise_weighted_log_sum(xp, guesses, elem_w, lse=lse)
    del log_gold, lse
    grad = None
    if want_grad:
        if elem_w is None:
            if negative is not None:
                neg = xp.nonzero(negative)[0]
                # p_y / n on the excluded column (gold_p is p_y / n already for logits)
                negative_values = gold_p[neg] if from_logits else gold_p[neg] / divisor
            # In place: nothing but the gradient is allocated at the size of the guesses.
            if from_logits:
                grad = probs  # p / n already
                if off:
                    grad -= off / divisor
                gold_p -= on / divisor
            else:
                # (p - t) / n, literally, so that the bits equal Thinc's gradient.
                # (a power-of-two n divides as a product: the same bits, cheaper)
                if off:
                    grad = xp.subtract(probs, off)
                    if divisor != 1:
                        divide_by(xp, grad, divisor, out=grad)
                elif divisor != 1:
                    grad = divide_by(xp, probs, divisor)
                else:
                    grad = probs.copy()
                gold_p -= on
                if divisor != 1:
                    divide_by(xp, gold_p, divisor, out=gold_p)
            grad.reshape(-1)[flat] = gold_p
            if negative is not None:
                grad[neg] = 0
                grad[neg, labels[neg]] = negative_values
        else:
            total = off * row_sums(xp, elem_w) + (on - off) * gold_w if off else on * gold_w
            grad = probs if from_logits else xp.empty_like(probs)
            xp.multiply(probs, total[:, None], out=grad)
            if off:
                grad -= off * elem_w
            grad.reshape(-1)[flat] = gold_p * total - on * gold_w
            if negative is not None:
                neg = xp.nonzero(negative)[0]
                grad[neg] = 0
                grad[neg, labels[neg]] = gold_w[neg] * gold_p[neg]
            if divisor != 1:
                grad /= divisor
    if negative is not None:
        losses = xp.where(negative, 0, losses)
    return mask_and_weight_rows(xp, grad, losses, missing, row_w)


def mask_and_weight_rows(xp, grad, losses, missing, row_w):
    """Zero the ``missing`` rows, then scale rows by ``row_w`` ((N, 1) or None)."""
    if missing is not None:
        losses = xp.where(missing, 0, losses)
        if grad is not None:
            grad[missing] = 0
    if row_w is not None:
        losses = losses * row_w[:, 0]
        if grad is not None:
            grad *= row_w
    return grad, losses


def softmax_cross_entropy(
    xp,
    guesses,
    target,
    *,
    from_logits: bool = False,
    span: Optional[float] = None,
    weights=None,
    missing=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Cross-entropy of softmax outputs against dense target rows ``t``.

    Row loss ``-sum_c w_c t_c log p_c``; gradient w.r.t. the logits
    ``p * S - w * t`` (``p - t`` when unweighted). ``missing`` rows are masked.
    """
    row_w, elem_w = split_weights(weights)
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses, span=span)
    else:
        probs, lse = guesses, None
    losses = -rowwise_target_log_sum(xp, guesses, target, elem_w, lse=lse)
    grad = None
    if want_grad:
        if elem_w is None:
            grad = xp.subtract(probs, target, out=probs if from_logits else None)
        else:
            weighted = elem_w * target
            grad = probs if from_logits else xp.empty_like(probs)
            xp.multiply(probs, weighted.sum(axis=1, keepdims=True), out=grad)
            grad -= weighted
        if divisor != 1:
            grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, row_w)


def distribution_tolerance(n_classes: int, dtype) -> float:
    """``1e-5 + C * eps(dtype)``: the rounding a softmax of C columns can accumulate."""
    return 1e-5 + n_classes * float(numpy.finfo(dtype).eps)


def check_distributions(checks, arg: str, x, *, hint: str = "", dtype=None) -> None:
    """Register with ``checks``: every row of ``x`` lies in [0, 1] and sums to 1.

    Two reductions (the min and the row sums, a BLAS mat-vec); NaN and inf
    fail them too and are told apart only after a failure. ``dtype``: the
    dtype the rows were produced in (float16 rows are checked in float32).
    """
    if x.size == 0:
        return
    xp = checks.xp
    sums = row_sums(xp, x)
    atol = distribution_tolerance(x.shape[1], x.dtype if dtype is None else dtype)  # the input's own rounding
    ok = (x.min() >= 0) & (xp.abs(sums - 1.0).max() <= atol)
    checks.fail_if(~ok, arg, lambda: distribution_problem(xp, x, sums) + hint)


def distribution_problem(xp, x, sums) -> str:
    """What is wrong with rows known to fail :func:`check_distributions`."""
    if not bool(xp.isfinite(sums).all()):
        return "contains NaN or infinite values"
    if bool(x.min() < 0) or bool(x.max() > 1):
        return "must lie in [0, 1]"
    worst = int(xp.argmax(xp.abs(sums - 1.0)))
    return f"rows must sum to 1 (row {worst} sums to {float(sums[worst]):.6g})"
