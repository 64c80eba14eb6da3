"""Maths of the losses for imbalanced and noisy labels: plain functions.

Every function takes the array module ``xp`` of its inputs first (as Thinc's
``ops``), then the guesses and the targets, then keyword-only settings and
``want_grad``, and returns ``(grad or None, losses)``. Nothing here checks
values or parses labels, and nothing writes into an input.

* :func:`soft_dice_loss` and :func:`tversky_loss` (sigmoid outputs) score
  *groups* of entries: each row (``average="samples"``) or each column over
  the batch (``average="macro"``). Both are a ratio ``E_g / (D_g + smooth)``
  of two weighted sums over the group, ``E`` of the soft errors and ``D`` of
  the denominator terms, so the loss of a group splits exactly into one
  share per row (``w e_i / (D_g + smooth)``, non-negative); the functions
  return those shares as the per-example losses and the gradient of their
  sum, undivided. ``weights`` act *inside* the sums.
* :func:`asymmetric_loss` and :func:`asymmetric_loss_with_logits` are
  elementwise, as :mod:`thinc_losses_plus.functional.sigmoid`: they return
  the ``(N, C)`` loss and its derivative, unweighted and undivided.
* :func:`generalized_cross_entropy_with_integer_labels` and
  :func:`generalized_cross_entropy` belong to the softmax family: the
  gradient is with respect to the logits, weighted, masked and divided as
  :mod:`thinc_losses_plus.functional.softmax` does.
"""
import math
from typing import Optional

import numpy

from .sigmoid import PROB_EPS
from .softmax import mask_and_weight_rows, row_sums, softmax_and_lse

SAMPLES = "samples"
MACRO = "macro"
AVERAGES = (SAMPLES, MACRO)


# Building blocks -------------------------------------------------------------------
#
# At 4096x50 a fresh (N, C) temporary costs more than the arithmetic on it (its
# pages are faulted in anew on each call), so the overlap losses keep at most
# one (N, C) work buffer besides the sigmoid's, reduce with BLAS and einsum
# (which allocate nothing of that size) and write in place.


def sigmoid_pair(xp, logits):
    """``(s(x), s(-x))``, both without overflow or cancellation for any ``x``."""
    e = xp.abs(logits)
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    e += 1.0  # 1 + exp(-|x|)
    p = xp.clip(logits, -math.inf, 0.0)
    xp.exp(p, out=p)
    p /= e
    q = xp.clip(logits, 0.0, math.inf)
    xp.negative(q, out=q)
    xp.exp(q, out=q)
    q /= e
    return p, q


def sigmoid_and_slope(xp, logits):
    """``(s(x), s(x) (1 - s(x)))`` in two buffers; ``s(x) = exp(min(x, 0)) / (1 + exp(-|x|))``.

    The slope ``p (1 - p)`` loses its relative precision only where it is
    below float epsilon (as the backward pass of Thinc's sigmoid layers).
    """
    e = xp.abs(logits)
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    e += 1.0
    p = xp.clip(logits, -math.inf, 0.0)
    xp.exp(p, out=p)
    p /= e
    slope = xp.subtract(1.0, p, out=e)
    slope *= p
    return p, slope


def self_adjusted(xp, p, alpha: float, *, logits: bool):
    """Li et al.'s ``q = (1 - p)^alpha p`` and ``dq/dguesses`` (None when it is 1).

    For probabilities ``dq/dp = (1 - p)^(alpha - 1) (1 - (1 + alpha) p)``;
    for ``0 < alpha < 1`` it is infinite at ``p = 1`` and is evaluated at
    ``1 - p >= 1e-7`` (``PROB_EPS``). For logits ``x``
    ``dq/dx = q (1 - (1 + alpha) p)``, finite everywhere.
    """
    q = xp.subtract(1.0, p)
    if alpha != 1.0 and not logits:
        base = q if alpha > 1.0 else xp.clip(q, PROB_EPS, math.inf)
        factor = base ** (alpha - 1.0)  # (1 - p)^(alpha - 1)
    else:
        factor = None
    q **= alpha
    q *= p
    slope = xp.multiply(p, -(1.0 + alpha))
    slope += 1.0
    if logits:
        slope *= q
    elif factor is not None:
        slope *= factor
    return q, slope


def overlap_guesses(xp, guesses, *, from_logits: bool, self_adjusting: float = 0.0):
    """``(q, dq/dguesses or None)``: the probabilities (self-adjusted) the overlap losses score."""
    if from_logits:
        p, chain = sigmoid_and_slope(xp, guesses)
    else:
        p, chain = guesses, None
    if self_adjusting:
        p, chain = self_adjusted(xp, p, self_adjusting, logits=from_logits)
    return p, chain


def group_sum(xp, *factors, average: str):
    """``sum(a * b * ...)`` over each row (``"samples"``) or each column (``"macro"``).

    None factors are skipped; others are ``(N, C)`` arrays or broadcastable
    to them (weights). One array is reduced with BLAS, several with einsum.
    """
    arrays = [f for f in factors if f is not None]
    shape = arrays[0].shape
    if len(arrays) == 1:
        x = arrays[0]
        if average == SAMPLES:
            return x @ xp.ones((shape[1],), dtype=x.dtype)
        return xp.ones((shape[0],), dtype=x.dtype) @ x
    arrays = [a if a.shape == shape else xp.broadcast_to(a, shape) for a in arrays]
    out = "i" if average == SAMPLES else "j"
    return xp.einsum(",".join(["ij"] * len(arrays)) + "->" + out, *arrays)


def along(vector, average: str):
    """A group vector as a column (``"samples"``: one value per row) or a row (``"macro"``)."""
    return vector[:, None] if average == SAMPLES else vector[None, :]


def ratio_losses(xp, errors, total, denominator, *, smooth: float, weights, average: str):
    """Group losses ``L = E / (D + s)`` and the per-row losses.

    ``errors``: the ``(N, C)`` soft errors (a work buffer, overwritten when
    weighted), ``total``: their weighted group sums ``E``, ``denominator``:
    ``D`` (``total`` and ``denominator`` are overwritten: they become ``L``
    and ``1 / (D + s)``). Returns ``(L, 1 / (D + s), per-row losses)``: for ``"samples"``
    the row's ``L``, for ``"macro"`` its share ``sum_c w e / (D_c + s)``.
    """
    inverse = xp.add(denominator, smooth, out=denominator)  # in place: (N,) arrays add up at 4096x50
    xp.divide(1.0, inverse, out=inverse)
    group = xp.multiply(total, inverse, out=total)
    if average == SAMPLES:
        return group, inverse, group
    if weights is not None:
        errors *= weights
    return group, inverse, errors @ inverse


def finish_overlap_grad(grad, inverse, weights, chain, average: str):
    """``grad * (1 / (D + s)) * w * dq/dguesses``, in place."""
    grad *= along(inverse, average)
    if weights is not None:
        grad *= weights
    if chain is not None:
        grad *= chain
    return grad


# Soft Dice and Tversky (sigmoid outputs) ---------------------------------------------


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
    logits with ``from_logits`` (``p = s(x)``), undivided.

    Returns ``(grad or None, per-row losses (N,))``.

    >>> import numpy
    >>> grad, loss = soft_dice_loss(numpy, numpy.asarray([[0.8, 0.2]]), numpy.asarray([[1.0, 0.0]]), smooth=1.0)
    >>> round(float(loss[0]), 4)  # 1 - (2 * 0.8 + 1) / (1.0 + 1.0 + 1)
    0.1333
    """
    q, chain = overlap_guesses(xp, guesses, from_logits=from_logits, self_adjusting=self_adjusting)
    t = targets
    buf = xp.subtract(q, t)
    if squared_denominator:
        buf *= buf  # (q - t)^2
        union = group_sum(xp, q, q, weights, average=average)
        union += group_sum(xp, t, t, weights, average=average)
    else:
        xp.multiply(t, -2.0, out=buf)
        buf += 1.0
        buf *= q
        buf += t  # q + t - 2 q t
        union = group_sum(xp, q, weights, average=average)
        union += group_sum(xp, t, weights, average=average)
    group, inverse, per_example = ratio_losses(
        xp, buf, group_sum(xp, buf, weights, average=average), union, smooth=smooth, weights=weights, average=average
    )
    if not want_grad:
        return None, per_example
    keep = along(1.0 - group, average)
    grad = buf  # the work buffer becomes the gradient
    if squared_denominator:
        xp.multiply(q, keep, out=grad)
        grad -= t
        grad *= 2.0
    else:
        xp.multiply(t, -2.0, out=grad)
        grad += keep
    return finish_overlap_grad(grad, inverse, weights, chain, average), per_example


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
    with ``from_logits``, undivided.

    Returns ``(grad or None, per-row losses (N,))``.

    >>> import numpy
    >>> grad, loss = tversky_loss(numpy, numpy.asarray([[0.8, 0.2]]), numpy.asarray([[1.0, 0.0]]), smooth=0.0)
    >>> round(float(loss[0]), 4)  # (0.3 * 0.2 + 0.7 * 0.2) / (0.8 + 0.3 * 0.2 + 0.7 * 0.2)
    0.2
    """
    p, chain = overlap_guesses(xp, guesses, from_logits=from_logits)
    t = targets
    # e = alpha p (1 - t) + beta (1 - p) t = p (alpha - (alpha + beta) t) + beta t
    buf = xp.multiply(t, -(alpha + beta) / beta if beta else -alpha)
    buf += alpha / beta if beta else alpha
    buf *= p
    if beta:
        buf += t
        buf *= beta
    errors = group_sum(xp, buf, weights, average=average)
    denominator = group_sum(xp, p, t, weights, average=average)
    denominator += errors
    group, inverse, per_example = ratio_losses(
        xp, buf, errors, denominator, smooth=smooth, weights=weights, average=average
    )
    if not want_grad:
        return None, per_example
    grad = buf  # the work buffer becomes the gradient
    xp.multiply(t, along(-((alpha + beta) + group * (1.0 - alpha - beta)), average), out=grad)
    grad += along(alpha * (1.0 - group), average)
    return finish_overlap_grad(grad, inverse, weights, chain, average), per_example


# Asymmetric loss (sigmoid outputs) ----------------------------------------------------
#
# Elementwise, with a dozen temporaries per entry: computed over blocks of rows
# small enough to stay in cache (and in malloc's free lists), which at 4096x50
# is several times faster than full-size temporaries.

#: Entries per block of the blockwise elementwise losses (64 KiB of float32).
BLOCK = 1 << 14


def blocks(n_rows: int, n_cols: int):
    step = max(1, BLOCK // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def small_power(xp, x, exponent: float):
    """``x ** exponent``, or None for exponent 0 (a factor 1); integer exponents up to 8
    by multiplication (numpy's general ``pow`` costs 20 times a product)."""
    if exponent == 0.0:
        return None
    if exponent == int(exponent) and exponent <= 8:
        k = int(exponent)
        result, base = None, x
        while k:
            if k & 1:
                result = base.copy() if result is None else result * base
            k >>= 1
            if k:
                base = base * base
        return result
    return x**exponent


def _times(a, b):
    """``a * b`` where None stands for 1."""
    if a is None:
        return b
    return a * b


def _asymmetric_terms(xp, p, one_minus_p, log_p, neg_log_not, p_m, one_minus_pm, t, *, gamma_pos, gamma_neg, clip, logits, want_grad):
    """Elementwise loss and gradient of one block (see :func:`asymmetric_loss`)."""
    mod_pos = small_power(xp, one_minus_p, gamma_pos)
    mod_neg = small_power(xp, p_m, gamma_neg)
    rest = 1.0 - t
    loss = _times(mod_pos, -log_p)
    loss *= t
    loss += rest * _times(mod_neg, neg_log_not)
    if not want_grad:
        return None, loss
    if logits and not clip:  # d/dx [p^gn softplus(x)] = p^gn (p + gn (1 - p) softplus(x)): no division
        d_neg = one_minus_p * neg_log_not
        d_neg *= gamma_neg
        d_neg += p
        if mod_neg is not None:
            d_neg *= mod_neg
    else:  # d/dp_m [-p_m^gn log(1 - p_m)] = p_m^gn / (1 - p_m) - gn p_m^gn log(1 - p_m) / p_m
        d_neg = xp.divide(1.0, one_minus_pm) if mod_neg is None else mod_neg / one_minus_pm
        if gamma_neg:
            tiny = float(numpy.finfo(p.dtype).tiny)
            d_neg += gamma_neg * mod_neg * neg_log_not / xp.clip(p_m, tiny, math.inf)
        if clip:
            d_neg *= p_m > 0
        if logits:  # times dp/dx = p (1 - p)
            d_neg *= p * one_minus_p
    if logits:  # the positive term directly: -(1 - p)^gp (gp p softplus(-x) + 1 - p)
        d_pos = p * -log_p
        d_pos *= gamma_pos
        d_pos += one_minus_p
    else:  # d/dp [-(1 - p)^gp log p] = -(1 - p)^gp / p + gp (1 - p)^gp log p / (1 - p)
        d_pos = xp.divide(1.0, p)
        if gamma_pos:
            d_pos -= gamma_pos * log_p / one_minus_p
    if mod_pos is not None:
        d_pos *= mod_pos
    grad = rest * d_neg
    grad -= t * d_pos
    return grad, loss


def _shifted(xp, p, one_minus_p, clip: float):
    """Probability shifting: ``p_m = max(p - m, 0)`` and ``1 - p_m = min(1 - p + m, 1)``."""
    p_m = xp.subtract(p, clip)
    xp.clip(p_m, 0.0, math.inf, out=p_m)
    return p_m, xp.clip(one_minus_p + clip, -math.inf, 1.0)


def _blockwise(xp, block_fn, guesses, targets, weights, divisor: float, want_grad: bool, terms=None):
    """Row losses ``sum_c w l`` and the gradient ``w dl / divisor`` of an elementwise loss, block by block
    (with ``terms``, an array of the guesses' shape, the elementwise ``w l`` written into it)."""
    n, c = guesses.shape
    per_row = xp.empty((n,), dtype=guesses.dtype)
    grad = xp.empty_like(guesses) if want_grad else None
    if weights is not None and weights.shape != guesses.shape:
        weights = xp.broadcast_to(weights, guesses.shape)
    scale = 1.0 / divisor
    ones = xp.ones((c,), dtype=guesses.dtype)
    for rows in blocks(n, c):
        g, loss = block_fn(guesses[rows], targets[rows])
        if weights is not None:
            loss *= weights[rows]
        per_row[rows] = loss @ ones
        if terms is not None:
            terms[rows] = loss
        if g is not None:
            if weights is not None:
                g *= weights[rows]
            if scale != 1.0:
                g *= scale
            grad[rows] = g
    return (terms if terms is not None and not want_grad else grad), per_row


def asymmetric_loss(
    xp,
    probs,
    targets,
    *,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
    eps: float = PROB_EPS,
    weights=None,
    divisor: float = 1,
    want_grad: bool = True,
    terms=None,
):
    """Asymmetric loss (Ridnik et al. 2021) of probabilities ``p``, summed over each row.

    Each entry: ``-t (1 - p)^gamma_pos log p - (1 - t) p_m^gamma_neg log(1 - p_m)``
    with ``p_m = max(p - clip, 0)``, times ``weights`` (None, or broadcastable
    to the guesses). ``p`` is clipped to ``[eps, 1 - eps]`` first and the
    loss and gradient are evaluated there (as
    :func:`~thinc_losses_plus.functional.sigmoid.binary_cross_entropy`).

    Gradient with respect to the probabilities ``p``, weighted and divided
    by ``divisor``::

        t (gamma_pos (1 - p)^gamma_pos log p / (1 - p) - (1 - p)^gamma_pos / p)
        + (1 - t) [p > clip] (p_m^gamma_neg / (1 - p_m) - gamma_neg p_m^gamma_neg log(1 - p_m) / p_m)

    Returns ``(grad or None, row losses (N,))``; with ``terms`` (an array of the
    guesses' shape) and ``want_grad`` false, ``(terms, row losses)``, the
    elementwise weighted losses written into ``terms``.

    >>> import numpy
    >>> _, loss = asymmetric_loss(numpy, numpy.asarray([[0.9, 0.55]]), numpy.asarray([[1.0, 0.0]]), gamma_pos=0.0, gamma_neg=4.0, clip=0.05)
    >>> round(float(loss[0]), 5)  # -log(0.9) - 0.5**4 log(0.5)
    0.14868
    """

    def block(x, t):
        p = xp.clip(x, eps, 1.0 - eps)
        one_minus_p = 1.0 - p
        p_m, one_minus_pm = _shifted(xp, p, one_minus_p, clip) if clip else (p, one_minus_p)
        neg_log_not = xp.log(one_minus_pm)
        xp.negative(neg_log_not, out=neg_log_not)
        return _asymmetric_terms(
            xp, p, one_minus_p, xp.log(p), neg_log_not, p_m, one_minus_pm, t,
            gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, logits=False, want_grad=want_grad,
        )

    return _blockwise(xp, block, probs, targets, weights, divisor, want_grad, terms)


def asymmetric_loss_with_logits(
    xp,
    logits,
    targets,
    *,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
    weights=None,
    divisor: float = 1,
    want_grad: bool = True,
    terms=None,
):
    """Asymmetric loss (Ridnik et al. 2021) of logits ``x``, computed stably, summed over each row.

    The loss of :func:`asymmetric_loss` at ``p = s(x)`` (no clipping of
    ``p``; ``-log p = softplus(-x)`` and ``-log(1 - p) = softplus(x)``).

    Gradient with respect to the logits ``x``, weighted and divided by ``divisor``::

        -t (1 - p)^gamma_pos (gamma_pos p softplus(-x) + 1 - p)
        + (1 - t) [p > clip] p (1 - p) (p_m^gamma_neg / (1 - p_m) - gamma_neg p_m^gamma_neg log(1 - p_m) / p_m)

    which for ``clip = 0`` is ``(1 - t) p^gamma_neg (p + gamma_neg (1 - p) softplus(x))``:
    finite for any logit.

    Returns ``(grad or None, row losses (N,))``.
    """

    def block(x, t):
        e = xp.abs(x)
        xp.negative(e, out=e)
        xp.exp(e, out=e)
        e += 1.0  # 1 + exp(-|x|)
        # s(x) = 1/2 + sign(x) (s(|x|) - 1/2), with one exp for both: only values below
        # float epsilon lose their relative precision (the logs below do not use them)
        p = xp.divide(1.0, e)
        p -= 0.5
        xp.copysign(p, x, out=p)
        p += 0.5
        softplus = xp.log(e, out=e)
        softplus += xp.clip(x, 0.0, math.inf)  # softplus(x) = -log(1 - p)
        neg_log_p = softplus - x  # softplus(-x) = -log(p)
        one_minus_p = 1.0 - p
        if clip:
            p_m, one_minus_pm = _shifted(xp, p, one_minus_p, clip)
            neg_log_not = xp.log(one_minus_pm)
            xp.negative(neg_log_not, out=neg_log_not)
        else:
            p_m, one_minus_pm, neg_log_not = p, one_minus_p, softplus
        xp.negative(neg_log_p, out=neg_log_p)  # log p
        return _asymmetric_terms(
            xp, p, one_minus_p, neg_log_p, neg_log_not, p_m, one_minus_pm, t,
            gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, logits=True, want_grad=want_grad,
        )

    return _blockwise(xp, block, logits, targets, weights, divisor, want_grad, terms)


# Generalized cross-entropy (softmax family) ----------------------------------------------


def _lq(xp, log_p, q: float):
    """``(1 - p^q) / q`` and ``p^q`` from ``log p``: ``-expm1(q log p) / q``, accurate as q -> 0."""
    scaled = xp.multiply(log_p, q)
    p_q = xp.exp(scaled)
    xp.expm1(scaled, out=scaled)
    scaled *= -1.0 / q
    return scaled, p_q


def generalized_cross_entropy_with_integer_labels(
    xp,
    guesses,
    labels,
    *,
    q: float,
    from_logits: bool = False,
    span: Optional[float] = None,
    weights=None,
    missing=None,
    negative=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Generalized cross-entropy ``w_y (1 - p_y^q) / q`` of softmax outputs (Zhang & Sabuncu 2018).

    ``weights`` (None, or broadcastable to ``(N, C)``: class weights times
    sample weights) give ``w``; ``missing`` rows are masked. Gradient with
    respect to the logits: ``w_y p_y^q (p - onehot(y))``, divided by
    ``divisor`` (``p - onehot(y)`` times ``p_y^q``: the cross-entropy's
    gradient, damped on the rows the model gets badly wrong). A
    ``negative`` row ("not y") scores the event "not y" the same way,
    ``w_y (1 - (1 - p_y)^q) / q``, with gradient ``w_y p_y (1 - p_y)^q`` on
    column y only (every other column masked, as the cross-entropy's
    negative labels). ``log p`` is ``log(p)`` for probabilities (``p = 0``
    gives the finite ``1 / q``), the log-softmax for logits.
    """
    n, c = guesses.shape
    rows = xp.arange(n)
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses, span=span)
        log_p_y = guesses[rows, labels] - lse
    else:
        probs = guesses
        log_p_y = xp.log(guesses[rows, labels])
    losses, p_y_q = _lq(xp, log_p_y, q)
    w_y = None if weights is None else xp.broadcast_to(weights, (n, c))[rows, labels]
    if w_y is not None:
        losses *= w_y
    if negative is not None:  # before the softmax buffer becomes the gradient
        neg = xp.nonzero(negative)[0]
        p_not = probs[neg, labels[neg]]
        neg_losses, not_q = _lq(xp, xp.log1p(-p_not), q)
        w_neg = 1.0 if w_y is None else w_y[neg]
        losses[neg] = neg_losses * w_neg
        d_not = w_neg * p_not * not_q
    grad = None
    if want_grad:
        g = p_y_q if w_y is None else p_y_q * w_y
        grad = probs if from_logits else xp.empty_like(probs)
        xp.multiply(probs, g[:, None], out=grad)
        grad[rows, labels] -= g
        if negative is not None:
            grad[neg] = 0
            grad[neg, labels[neg]] = d_not
    if grad is not None and divisor != 1:
        grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, None)


def generalized_cross_entropy(
    xp,
    guesses,
    target,
    *,
    q: float,
    from_logits: bool = False,
    span: Optional[float] = None,
    weights=None,
    missing=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Generalized cross-entropy of softmax outputs against dense target rows ``t``.

    Row loss ``sum_c w_c t_c (1 - p_c^q) / q`` (one-hot rows give
    :func:`generalized_cross_entropy_with_integer_labels`). With
    ``g_c = w_c t_c p_c^q``, the gradient with respect to the logits is
    ``p * sum_c g_c - g``, divided by ``divisor``. ``missing`` rows are masked.
    """
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses, span=span)
        log_p = guesses - lse[:, None]
    else:
        probs = guesses
        log_p = xp.log(guesses)
    terms, p_q = _lq(xp, log_p, q)
    weighted = target if weights is None else target * weights
    terms *= weighted
    losses = row_sums(xp, terms)
    grad = None
    if want_grad:
        p_q *= weighted  # g
        grad = probs * row_sums(xp, p_q)[:, None]
        grad -= p_q
        if divisor != 1:
            grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, None)
