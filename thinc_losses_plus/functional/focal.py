"""Maths of the focal cross-entropy (Lin et al. 2017) of softmax outputs: dense and integer labels.

Same conventions as :mod:`thinc_losses_plus.functional.softmax`: ``xp`` first,
the gradient with respect to the logits (already divided by ``divisor``),
the unnormalised loss of each row.
"""
from typing import Optional

import numpy

from .softmax import BLOCK_ELEMENTS, EPS, mask_and_weight_rows, row_starts, row_sums, scale_rows, softmax_and_lse


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

    Memory: the softmax (or, for probabilities, one ``empty_like``) is the
    only array of the guesses' size and becomes the gradient; everything
    else is computed in blocks of rows (:data:`FOCAL_BLOCKS` at most, four
    temporaries of a block each), each block's losses written over its rows
    of ``lse``. Blocks are elementwise work and row sums: the values are
    those of the whole-array computation, bit for bit.
    """
    n, c = guesses.shape
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses, span=span)
    else:
        probs, lse = guesses, None
    if negative is not None:
        neg = xp.nonzero(negative)[0]
        y = labels[neg]
        p_neg = probs[neg, y]  # before the softmax buffer becomes the gradient
    grad = None
    if want_grad:
        grad = probs if from_logits else xp.empty_like(probs)
    dtype = numpy.result_type(guesses.dtype, target.dtype) if weights is None else numpy.result_type(guesses.dtype, target.dtype, weights.dtype)
    losses = lse if lse is not None and lse.dtype == dtype else xp.empty((n,), dtype=dtype)
    tiny = numpy.finfo(guesses.dtype).tiny
    for rows in focal_blocks(n, c):
        p = probs[rows]
        if from_logits:
            log_p = xp.subtract(guesses[rows], lse[rows, None])
        else:
            log_p = p + EPS
            xp.log(log_p, out=log_p)
        weighted = target[rows]
        if weights is not None:
            weighted = weighted * (weights if weights.shape[0] == 1 else weights[rows])
        q = 1.0 - p
        modulator = _power(xp, q, gamma)
        terms = weighted * modulator
        terms *= log_p
        losses[rows] = -row_sums(xp, terms)
        if grad is not None:
            # gamma (1-p)^(gamma-1) p log p, written as gamma (1-p)^gamma * (p log p / (1-p)):
            # where 1 - p = 0 the factor (1-p)^gamma (or gamma itself) is 0, so a clipped
            # denominator changes nothing (and avoids numpy's slow where on random masks).
            ratio = xp.multiply(p, log_p, out=terms if terms.dtype == log_p.dtype else None)
            del log_p
            ratio /= xp.maximum(q, tiny, out=None if modulator is q else q)  # clip(q, tiny, None)
            ratio *= gamma
            ratio -= 1.0
            ratio *= modulator
            ratio *= weighted  # g_c = dL/dp_c * p_c
            del modulator, weighted
            # grad = ratio - p * sum_c ratio_c (the block of probs is read before it is written;
            # the multiply's iteration buffer is at most a block: no more than the four above)
            scaled = xp.multiply(p, row_sums(xp, ratio)[:, None], out=q if q.dtype == ratio.dtype else None)
            xp.subtract(ratio, scaled, out=grad[rows])
            del ratio, scaled
        del q, p
        terms = log_p = modulator = weighted = None  # before the next block's temporaries
    del lse
    if negative is not None:
        w_y = 1.0 if weights is None else xp.broadcast_to(weights, (n, c))[neg, y]
        losses[neg], d_y = focal_not_label(xp, p_neg, w_y, gamma)
        if grad is not None:
            grad[neg] = 0
            grad[neg, y] = d_y
    if grad is not None and divisor != 1:
        grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, None)


#: Blocks of rows (at most) of the dense focal loss: each block's four temporaries are about
#: 4 / FOCAL_BLOCKS of the gradient, freed as they go (64: 1.09x the gradient at 4096x50, and
#: no slower than torch; every block costs about 30 us of calls).
FOCAL_BLOCKS = 64
#: Fewest elements of a block (small batches: fewer, larger blocks; their time is the calls').
FOCAL_MIN_ELEMENTS = 512


def focal_blocks(n_rows: int, n_cols: int, max_blocks: Optional[int] = None):
    """Slices of rows: about 1 / max_blocks (default :data:`FOCAL_BLOCKS`) of the rows, at
    least :data:`FOCAL_MIN_ELEMENTS` and at most ``BLOCK_ELEMENTS`` elements, a multiple of 8
    rows (BLAS sums rows in groups: blocks aligned to them give the whole array's row sums,
    bit for bit). ``max_blocks=1``: the whole array."""
    max_blocks = FOCAL_BLOCKS if max_blocks is None else max_blocks
    step = max(-(-n_rows // max_blocks), -(-FOCAL_MIN_ELEMENTS // max(n_cols, 1)))
    step = min(step, max(8, BLOCK_ELEMENTS // max(n_cols, 1)))
    if max_blocks > 1:
        step = -(-step // 8) * 8
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


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

    Memory: the softmax (or, for probabilities, one ``empty_like``) is the
    only array of the guesses' size; the label entries are read and written
    through flat indices ``i * C + y`` (``take``/``put``: no 2-d fancy
    indexing), the row vectors reuse each other's buffers (at most four of N
    at a time); see :func:`~thinc_losses_plus.functional.softmax.scale_rows` for the scaling of the rows.
    """
    n, c = guesses.shape
    if not guesses.flags.c_contiguous:  # flat indices need C order (the calculators' always is)
        guesses = xp.ascontiguousarray(guesses)
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses, span=span)
    else:
        probs, lse = guesses, None
    # Label entries through flat indices, made after the softmax (its temporaries are gone).
    flat = _label_flat_indices(xp, labels, n, c)
    if from_logits:
        log_p_y = guesses.reshape(-1).take(flat)
        log_p_y -= lse
        del lse
        p_y = probs.reshape(-1).take(flat)
    else:
        p_y = probs.reshape(-1).take(flat)
        log_p_y = p_y + EPS
        xp.log(log_p_y, out=log_p_y)
    w_y = 1.0 if weights is None else _label_weights(xp, weights, labels, flat, n, c)
    del flat
    if negative is not None:
        neg = xp.nonzero(negative)[0]
        p_neg, w_neg = p_y[neg], (w_y if weights is None else w_y[neg])
    q = 1.0 - p_y
    modulator = _power(xp, q, gamma)
    if modulator is q:  # gamma == 1: q is clipped in place below
        modulator = q.copy()
    g = None
    if want_grad:
        # g = w_y (gamma (1-p)^gamma p log p / (1-p) - (1-p)^gamma); see the dense version.
        # Computed in the buffers of p_y and q, in the order (and so with the bits) of
        # gamma * modulator * (p_y * log_p_y / clip(q, tiny)) - modulator.
        ratio = xp.multiply(p_y, log_p_y, out=p_y)
        ratio /= xp.maximum(q, numpy.finfo(q.dtype).tiny, out=q)  # clip(q, tiny, None), in place
        g = xp.multiply(modulator, gamma, out=q)
        g *= ratio
        del ratio
        g -= modulator
        g *= w_y
    del p_y, q
    # losses = -(w_y * modulator * log_p_y), in the modulator's buffer
    losses = modulator
    if weights is not None:
        losses *= w_y
    losses *= log_p_y
    xp.negative(losses, out=losses)
    del log_p_y, modulator
    grad = None
    if want_grad:
        grad = probs if from_logits else xp.empty_like(probs)
        # grad = p * (-g), then + g on the label: as x - (-g), the same bits as x + g
        xp.negative(g, out=g)
        scale_rows(xp, probs, g, out=grad)
        _subtract_at_labels(xp, grad, labels, g, n, c)
        del g
    if negative is not None:
        losses[neg], d_y = focal_not_label(xp, p_neg, w_neg, gamma)
        if grad is not None:
            grad[neg] = 0
            grad[neg, labels[neg]] = d_y
    if grad is not None and divisor != 1:
        grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, None)


def _label_flat_indices(xp, labels, n: int, c: int):
    """The flat indices ``i * C + y_i``, a new int64 array."""
    return xp.add(row_starts(xp, n, c), labels, dtype="int64", casting="unsafe")


def _label_weights(xp, weights, labels, flat, n: int, c: int):
    """``w[i, y_i]`` of weights broadcastable to (N, C): (1, C), (N, 1) or (N, C)."""
    if weights.shape == (n, c) and weights.flags.c_contiguous:
        return weights.reshape(-1).take(flat)
    if weights.shape[0] == 1:
        return weights[0].take(labels) if weights.shape[1] == c else xp.repeat(weights[0], n)
    if weights.shape[1] == 1:
        return weights[:, 0]
    return weights[xp.arange(n), labels]


#: Rows per block of the label entries' update (their flat indices are int64: 2 row vectors).
LABEL_BLOCK_ROWS = 512


def _subtract_at_labels(xp, grad, labels, v, n: int, c: int):
    """``grad[i, y_i] -= v_i``, in blocks of rows (bounded index temporaries)."""
    flat_grad = grad.reshape(-1)
    starts = row_starts(xp, n, c)
    for start in range(0, n, LABEL_BLOCK_ROWS):
        stop = min(n, start + LABEL_BLOCK_ROWS)
        flat = xp.add(starts[start:stop], labels[start:stop], dtype="int64", casting="unsafe")
        vals = flat_grad.take(flat)
        vals -= v[start:stop]
        flat_grad.put(flat, vals)


def _power(xp, x, exponent: float):
    """``x ** exponent`` with the common focal exponents as multiplications."""
    if exponent == 0.0:
        return xp.ones_like(x)
    if exponent == 1.0:
        return x
    if exponent == 2.0:
        return x * x
    return x**exponent
