"""Maths of the focal cross-entropy (Lin et al. 2017) of softmax outputs: dense and integer labels.

Same conventions as :mod:`thinc_losses_plus.functional.softmax`: ``xp`` first,
the gradient with respect to the logits (already divided by ``divisor``),
the unnormalised loss of each row.
"""
from typing import Optional

import numpy

from .softmax import EPS, mask_and_weight_rows, row_sums, softmax_and_lse


def focal_not_label(xp, p_y, w_y, gamma: float):
    """Focal score of a negative label "not y": ``-w p^gamma log(1 - p)`` and its d/dz_y."""
    scale = w_y * p_y**gamma
    log_not = xp.log(1.0 - p_y + EPS)
    return -scale * log_not, scale * (p_y - gamma * (1.0 - p_y) * log_not)

def softmax_focal_cross_entropy(
    xp,
    guesses,
    target,
    *,
    gamma: float,
    from_logits: bool = False,
    span: Optional[float] = None,
    weights=None,
    missing=None,
    negative=None,
    labels=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Focal cross-entropy (Lin et al. 2017) of softmax outputs, dense targets.

    Row loss ``-sum_c w_c t_c (1 - p_c)^gamma log p_c``. With
    ``g_c = dL/dp_c * p_c = w_c t_c (gamma (1-p_c)^(gamma-1) p_c log p_c - (1-p_c)^gamma)``
    the gradient w.r.t. the logits is ``g - p * sum_c g_c``. ``negative`` rows
    (label ``labels[i]`` is excluded) score the event "not y":
    ``-w_y p_y^gamma log(1 - p_y)``, gradient on column y only.
    """
    n, c = guesses.shape
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses, span=span)
        log_p = guesses - lse[:, None]
    else:
        probs = guesses
        log_p = xp.log(guesses + EPS)
    weighted = target if weights is None else target * weights
    q = 1.0 - probs
    modulator = _power(xp, q, gamma)
    losses = -row_sums(xp, weighted * modulator * log_p)
    grad = None
    if want_grad:
        # gamma (1-p)^(gamma-1) p log p, written as gamma (1-p)^gamma * (p log p / (1-p)):
        # where 1 - p = 0 the factor (1-p)^gamma (or gamma itself) is 0, so a clipped
        # denominator changes nothing (and avoids numpy's slow where on random masks).
        ratio = probs * log_p
        ratio /= xp.clip(q, numpy.finfo(q.dtype).tiny, None)
        ratio *= gamma
        ratio -= 1.0
        ratio *= modulator
        ratio *= weighted  # g_c = dL/dp_c * p_c
        grad = ratio - probs * row_sums(xp, ratio)[:, None]
    if negative is not None:
        neg = xp.nonzero(negative)[0]
        y = labels[neg]
        w_y = 1.0 if weights is None else xp.broadcast_to(weights, (n, c))[neg, y]
        losses[neg], d_y = focal_not_label(xp, probs[neg, y], w_y, gamma)
        if grad is not None:
            grad[neg] = 0
            grad[neg, y] = d_y
    if grad is not None and divisor != 1:
        grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, None)


def softmax_focal_cross_entropy_with_integer_labels(
    xp,
    guesses,
    labels,
    *,
    gamma: float,
    from_logits: bool = False,
    span: Optional[float] = None,
    weights=None,
    missing=None,
    negative=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Focal cross-entropy against one-hot labels, in O(N) work plus one pass.

    With a one-hot target only the label's term is non-zero, so
    ``g = dL/dp_y * p_y`` is one number per row and the gradient w.r.t. the
    logits is ``g * onehot(y) - p * g``. Same loss, gradient and ``negative``
    rows as :func:`softmax_focal_cross_entropy`.
    """
    n, c = guesses.shape
    rows = xp.arange(n)
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses, span=span)
        log_p_y = guesses[rows, labels] - lse
    else:
        probs = guesses
        log_p_y = xp.log(guesses[rows, labels] + EPS)
    p_y = probs[rows, labels]
    w_y = 1.0 if weights is None else xp.broadcast_to(weights, (n, c))[rows, labels]
    q = 1.0 - p_y
    modulator = _power(xp, q, gamma)
    losses = -(w_y * modulator * log_p_y)
    grad = None
    if want_grad:
        # g = w_y (gamma (1-p)^gamma p log p / (1-p) - (1-p)^gamma); see the dense version
        g = gamma * modulator * (p_y * log_p_y / xp.clip(q, numpy.finfo(q.dtype).tiny, None)) - modulator
        g *= w_y
        grad = probs if from_logits else xp.empty_like(probs)
        xp.multiply(probs, -g[:, None], out=grad)
        grad[rows, labels] += g
    if negative is not None:
        neg = xp.nonzero(negative)[0]
        losses[neg], d_y = focal_not_label(xp, p_y[neg], w_y if weights is None else w_y[neg], gamma)
        if grad is not None:
            grad[neg] = 0
            grad[neg, labels[neg]] = d_y
    if grad is not None and divisor != 1:
        grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, None)


def _power(xp, x, exponent: float):
    """``x ** exponent`` with the common focal exponents as multiplications."""
    if exponent == 0.0:
        return xp.ones_like(x)
    if exponent == 1.0:
        return x
    if exponent == 2.0:
        return x * x
    return x**exponent

