"""The common cases of the sparse cross-entropy, their input checks folded in: one transfer.

Probabilities against plain integer labels (no weights, masks, smoothing or
logits) are what a spaCy tagger or textcat hands a loss on every step. The
kernels here compute their gradient ``(p - onehot) / divisor`` and the row
log-likelihoods with the bits of
:func:`~thinc_losses_plus.functional.softmax.softmax_cross_entropy_with_integer_labels`
(and, for log-probability guesses, the gradient ``-onehot / divisor`` of
:func:`~thinc_losses_plus.functional.nll.nll_with_integer_labels`), and check
the guesses and labels on the way, folded into one device boolean: a
failed check returns None, and the caller's general path then finds and
names the problem.
"""
import math
from typing import Optional

import numpy

from .._core import exact_reciprocal
from .softmax import EPS, distribution_tolerance, ones_vector, row_starts, softmax_and_lse

#: Beyond this size (numpy only) the plain kernel streams the guesses in row blocks of
#: STREAM_ELEMENTS, so that the checks read each block from the cache the gradient's
#: pass brought it into: one pass over memory instead of three.
STREAM_BYTES = 1 << 23
STREAM_ELEMENTS = 1 << 16  # 256 KiB of float32: half this machine's per-core L2
#: Up to this many columns the label entries are gathered twice rather than held twice.
SECOND_GATHER_COLUMNS = 16
_UNSIGNED = {size: numpy.dtype(f"uint{8 * size}") for size in (1, 2, 4, 8)}


_PLANS = {}


def _plain_plan(xp, n: int, c: int, dtype, divisor: float):
    """What the plain kernel derives from the shapes: the ones vector, the row starts, the
    reciprocal of ``divisor`` (where exact), the bounds a row sum must lie in (see
    :func:`sum_bounds`), and 1 and ``EPS`` as scalars of the guesses' dtype (the values a
    Python float takes in their ufuncs, without its conversion each call); numpy's are cached."""
    key = (n, c, dtype.char, divisor)
    plan = _PLANS.get(key) if xp is numpy else None
    if plan is None:
        scalar = dtype.type
        inverse = exact_reciprocal(divisor) if divisor != 1 else None
        inverse = None if inverse is None else scalar(inverse)  # a power of two: exact in the dtype
        low, high = sum_bounds(distribution_tolerance(c, dtype), dtype)
        plan = (ones_vector(xp, c, dtype), row_starts(xp, n, c), inverse, low, high, scalar(1.0), scalar(EPS))
        if xp is numpy:
            if len(_PLANS) > 64:
                _PLANS.clear()
            _PLANS[key] = plan
    return plan


def sum_bounds(atol: float, dtype):
    """``(low, high)``, scalars of ``dtype``: a row sum ``s`` of that dtype passes
    ``low <= s <= high`` exactly when it passes the check of
    :func:`~thinc_losses_plus.functional.softmax.check_distributions`,
    ``|s - 1| <= atol`` computed in the dtype (``atol`` rounded to it).

    ``s -> s - 1`` (rounded) is monotone, so the sums that pass form an
    interval of the dtype's numbers; its ends are found by bisection over
    their bit patterns. Two reductions (a min and a max) then replace the
    check's three operations (subtract, abs, max).
    """
    scalar = numpy.dtype(dtype).type
    one, a = scalar(1.0), scalar(atol)
    with numpy.errstate(over="ignore"):
        low = _first(lambda s: s - one >= -a, scalar(0.0), one, scalar)
        high = _first(lambda s: not (s - one <= a), one, scalar(numpy.finfo(scalar).max), scalar)
    return low, numpy.nextafter(high, scalar(0.0))


def _first(passes, lo, hi, scalar):
    """The least number ``x`` of ``scalar``'s type in ``(lo, hi]`` with ``passes(x)`` (a
    predicate false at ``lo``, true at ``hi``, monotone), by bisection over the bit patterns
    of non-negative numbers (ordered as the numbers are)."""
    as_int = numpy.dtype(f"int{8 * numpy.dtype(scalar).itemsize}").type
    lo_bits, hi_bits = int(numpy.asarray(lo).view(as_int)), int(numpy.asarray(hi).view(as_int))
    while hi_bits - lo_bits > 1:
        mid = (lo_bits + hi_bits) // 2
        if passes(numpy.asarray(as_int(mid)).view(scalar)[()]):
            hi_bits = mid
        else:
            lo_bits = mid
    return numpy.asarray(as_int(hi_bits)).view(scalar)[()]


def checked_cross_entropy_with_integer_labels(
    xp,
    probs,
    labels,
    *,
    labels_checked: bool = False,
    labels_scratch: bool = False,
    overwrite: bool = False,
    divisor: float = 1,
    want_grad: bool = True,
):
    """The common case of :func:`softmax_cross_entropy_with_integer_labels`, checks included.

    Probabilities, one-hot targets, no weights, masks or smoothing: the
    gradient ``(p - onehot) / divisor`` and ``log(p_y + EPS)`` of each row (the
    negated row loss), with the bits of the general function. First come the
    checks of :func:`check_distributions` and, unless
    ``labels_checked``, labels in ``[0, C)``: folded into one device boolean
    and one transfer. Returns None when a check fails: the caller's general
    path then finds and names the problem. ``labels_scratch``: ``labels`` is a
    fresh int64 array the function may overwrite (it becomes the flat index).
    ``overwrite``: ``probs`` is scratch, and the gradient is written over it
    (only once the checks have passed: a None leaves it as it was).

    ``probs``: C-contiguous float32/float64 ``(N, C)``, N > 0; ``labels``:
    ``(N,)`` integers (not uint64).
    """
    n, c = probs.shape
    ones, starts, inverse, low_sum, high_sum, one, eps = _plain_plan(xp, n, c, probs.dtype, divisor)
    ok = None if labels_checked else _labels_in_range(labels, c)
    grad = None
    if want_grad and xp is numpy and probs.nbytes > STREAM_BYTES and not overwrite:
        grad = numpy.empty_like(probs)
        sums = numpy.empty((n,), dtype=probs.dtype)
        step = max(1, STREAM_ELEMENTS // c)
        lows = numpy.empty((-(-n // step),), dtype=probs.dtype)
        for i, start in enumerate(range(0, n, step)):
            block = probs[start:start + step]
            _scaled(xp, block, divisor, inverse, grad[start:start + step])
            lows[i] = block.min()
            numpy.matmul(block, ones, out=sums[start:start + step])
        low = lows.min()
    else:
        low = probs.min()
        sums = probs @ ones
    # NaN fails every test. On the host, Python's `and` (numpy's booleans convert for free);
    # on a device, one boolean, one transfer.
    if xp is numpy:
        good = low >= 0 and sums.min() >= low_sum and sums.max() <= high_sum and (ok is None or ok)
    else:
        good = (low >= 0) & (sums.min() >= low_sum) & (sums.max() <= high_sum)
        good = bool(good if ok is None else good & ok)
    del sums  # peak memory: the gradient and three (N,) arrays
    if not good:
        return None
    if labels_scratch:
        flat = labels
        flat += starts
    else:
        flat = starts + labels
    if want_grad and not overwrite and c <= SECOND_GATHER_COLUMNS:
        # The label entries of the gradient first, then log p_y from a second gather: one
        # (N,) array alive at a time besides the flat index (peak memory at textcat sizes,
        # where an (N,) array is a tenth of the gradient; with wide rows it is a few percent,
        # and the second gather's random reads cost more than the array).
        if grad is None:
            grad = _scaled(xp, probs, divisor, inverse, None)
        gold = probs.reshape(-1)[flat]
        gold -= one
        if divisor != 1:
            _scaled(xp, gold, divisor, inverse, gold)
        grad.reshape(-1)[flat] = gold
        del gold
        log_gold = probs.reshape(-1)[flat]
        log_gold += eps
        return grad, xp.log(log_gold, out=log_gold)
    gold = probs.reshape(-1)[flat]
    log_gold = gold + eps
    xp.log(log_gold, out=log_gold)
    if want_grad:
        if grad is None:  # (with ``overwrite``, over the guesses: p_y is read before they are)
            grad = _scaled(xp, probs, divisor, inverse, probs if overwrite else None)
        gold -= one
        if divisor != 1:
            _scaled(xp, gold, divisor, inverse, gold)
        grad.reshape(-1)[flat] = gold
    return grad, log_gold


def checked_nll_with_integer_labels(
    xp, log_probs, labels, *, atol: float, labels_checked: bool = False, labels_scratch: bool = False,
    divisor: float = 1, want_grad: bool = True,
):
    """The common case of :func:`~thinc_losses_plus.functional.nll.nll_with_integer_labels`,
    checks included: log-probabilities ``l`` against plain labels.

    The gradient ``-onehot / divisor`` (exact, with respect to the
    log-probabilities) and ``l_y`` of each row (the negated row loss), with
    the bits of the general function. Its checks: ``l`` finite and at most
    ``atol`` (a min and a max: ``-inf`` fails the first, NaN and ``+inf`` the
    second), labels in ``[0, C)`` unless ``labels_checked``, folded into one
    device boolean; None when one fails. ``labels_scratch`` as in
    :func:`checked_cross_entropy_with_integer_labels`.
    """
    n, c = log_probs.shape
    ok = None if labels_checked else _labels_in_range(labels, c)
    good = (log_probs.min() > -math.inf) & (log_probs.max() <= atol)
    if not (good if ok is None else good & ok):
        return None
    starts = row_starts(xp, n, c)
    if labels_scratch:
        flat = labels
        flat += starts
    else:
        flat = starts + labels
    gold = log_probs.reshape(-1)[flat]
    grad = None
    if want_grad:
        grad = xp.zeros_like(log_probs)
        # -1 / divisor in the dtype: the general path's grad[rows, labels] = -1, then grad /= divisor
        minus = numpy.divide(numpy.full((), -1.0, dtype=log_probs.dtype), divisor) if divisor != 1 else -1.0
        grad.reshape(-1)[flat] = float(minus)
    return grad, gold


def checked_softmax_cross_entropy_with_integer_labels(
    xp, logits, labels, *, labels_checked: bool = False, labels_scratch: bool = False,
    divisor: float = 1, want_grad: bool = True,
):
    """The common case of :func:`~thinc_losses_plus.functional.softmax.softmax_cross_entropy_with_integer_labels`
    with ``from_logits``, checks included: logits ``z`` against plain labels.

    The gradient ``(softmax(z) - onehot) / divisor`` w.r.t. the logits and
    ``z_y - logsumexp(z)`` of each row (the negated row loss), with the bits
    of the general function. Its checks: the logits' span ``max - min``
    (computed in float64; finite exactly when every logit is, and the
    softmax's choice of shift) and, unless ``labels_checked``, labels in
    ``[0, C)``: one transfer. None when one fails. ``labels_scratch`` as in
    :func:`checked_cross_entropy_with_integer_labels`.

    Memory: the softmax buffer becomes the gradient; besides it, the flat
    index and two ``(N,)`` float arrays.
    """
    n, c = logits.shape
    ok = None if labels_checked else _labels_in_range(labels, c)
    high, low = logits.max(), logits.min()
    if xp is numpy:
        span = float(high) - float(low)
        good = math.isfinite(span) and (ok is None or bool(ok))
    else:  # one transfer for the span and the labels' check
        parts = [high.astype("float64"), low.astype("float64")] + ([] if ok is None else [ok.astype("float64")])
        values = xp.stack(parts).tolist()
        span = values[0] - values[1]
        good = math.isfinite(span) and (ok is None or bool(values[2]))
    if not good:
        return None
    probs, lse = softmax_and_lse(xp, logits, scale=1.0 / divisor if want_grad else 1.0, span=span)
    if labels_scratch:
        flat = labels
        flat += row_starts(xp, n, c)
    else:
        flat = row_starts(xp, n, c) + labels
    log_gold = logits.reshape(-1)[flat]
    log_gold -= lse
    del lse
    if not want_grad:
        return None, log_gold
    gold_p = probs.reshape(-1)[flat]  # p_y / divisor
    gold_p -= 1.0 / divisor
    probs.reshape(-1)[flat] = gold_p
    return probs, log_gold


def _labels_in_range(labels, c: int):
    """``0 <= labels < c`` as one device boolean, from one reduction."""
    dtype = labels.dtype
    if dtype.kind == "u":
        return labels.max() < c
    unsigned = _UNSIGNED[dtype.itemsize]
    if c <= 1 << (8 * dtype.itemsize - 1):
        # Read as unsigned, a negative label is at least 2**(bits-1) >= C: one
        # max checks both bounds.
        return labels.view(unsigned).max() < c
    # Every non-negative value of the dtype is below C (int8 labels, 300
    # classes): a negative label read as unsigned could be below C.
    return labels.min() >= 0


def _scaled(xp, x, divisor: float, inverse: Optional[float], out):
    """``x / divisor`` (into ``out``): :func:`~thinc_losses_plus._core.divide_by` with its reciprocal known."""
    if divisor == 1:
        if out is None:
            return x.copy()
        out[...] = x
        return out
    if inverse is None:
        return xp.divide(x, divisor, out=out)
    return xp.multiply(x, inverse, out=out)
