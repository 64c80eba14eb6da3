"""Maths of the generalized cross-entropy (Zhang & Sabuncu 2018) of softmax outputs: plain functions.

The softmax family's conventions (:mod:`thinc_losses_plus.functional.softmax`): the
gradient is with respect to the logits, weighted, masked and divided by
``divisor``. The integer-label function writes the gradient in a few row blocks
(:func:`gce_row_blocks`): the peak of a call is the gradient plus under 10% of it
at 4096x50 and 32768x1000.
"""
from typing import Optional


from .blocks import small_ufunc_buffers
from .softmax import mask_and_weight_rows, row_sums, softmax_and_lse


# Generalized cross-entropy (softmax family) ----------------------------------------------


def _lq(xp, log_p, q: float):
    """``(1 - p^q) / q`` and ``p^q`` from ``log p``: ``-expm1(q log p) / q``, accurate as q -> 0."""
    scaled = xp.multiply(log_p, q)
    p_q = xp.exp(scaled)
    xp.expm1(scaled, out=scaled)
    scaled *= -1.0 / q
    return scaled, p_q


#: Rows per block of :func:`generalized_cross_entropy_with_integer_labels` at least; at most
#: :data:`GCE_BLOCKS` blocks of more rows (its per-row values are a few (rows,) arrays a block).
GCE_MIN_ROWS = 256
GCE_BLOCKS = 8


def gce_row_blocks(n_rows: int):
    """Row slices of :func:`generalized_cross_entropy_with_integer_labels`: at most
    :data:`GCE_BLOCKS`, of :data:`GCE_MIN_ROWS` rows at least."""
    step = max(GCE_MIN_ROWS, -(-n_rows // GCE_BLOCKS))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


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

    Memory: the gradient (for logits, the softmax's buffer) is written by
    row blocks (:func:`gce_row_blocks`), ``g / divisor`` spread over each row
    as one product; the per-row values are arrays of a block's rows, the
    label entries reached through flat indices ``i * C + y``.
    """
    n, c = guesses.shape
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses, span=span)
    else:
        probs, lse = guesses, None
    if weights is not None:
        weights = xp.broadcast_to(weights, (n, c))
    losses = xp.empty((n,), dtype=guesses.dtype)
    neg = None
    if negative is not None:  # before the softmax buffer becomes the gradient
        neg = xp.nonzero(negative)[0]
        p_not = probs[neg, labels[neg]]
        neg_losses, not_q = _lq(xp, xp.log1p(-p_not), q)
        w_neg = 1.0 if weights is None else weights[neg, labels[neg]]
        neg_losses *= w_neg
        d_not = w_neg * p_not * not_q
        if divisor != 1:
            d_not /= divisor
    grad = None
    if want_grad:
        grad = probs if from_logits else xp.empty_like(probs)
    flat_grad = None if grad is None else grad.reshape(-1)
    flat_guesses = guesses.reshape(-1)
    inverse = 1.0 / divisor
    with small_ufunc_buffers(xp):
        for rows in gce_row_blocks(n):
            flat = xp.arange(rows.start * c, rows.stop * c, c)  # i * C + y: the label entries
            flat += labels[rows]
            if from_logits:
                log_p_y = flat_guesses[flat]
                log_p_y -= lse[rows]
            else:
                log_p_y = xp.log(flat_guesses[flat])
            # (1 - p_y^q) / q = -expm1(q log p_y) / q, accurate as q -> 0
            log_p_y *= q
            g = xp.exp(log_p_y)  # p_y^q
            block_losses = xp.expm1(log_p_y, out=losses[rows])
            block_losses *= -1.0 / q
            if weights is not None:  # (a broadcast view: indexed by row and column, nothing copied)
                w_y = weights[xp.arange(rows.start, rows.stop), labels[rows]]
                block_losses *= w_y
                g *= w_y
            if grad is None:
                continue
            if divisor != 1:
                g *= inverse
            xp.multiply(probs[rows], g[:, None], out=grad[rows])
            flat_grad[flat] -= g
    if negative is not None:
        losses[neg] = neg_losses
        if grad is not None:
            grad[neg] = 0
            grad[neg, labels[neg]] = d_not
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
