"""Maths of the softmax family: plain functions, no settings, no truth parsing.

Every function takes the array module ``xp`` of its inputs and returns the
gradient (already divided by ``divisor``, or ``None`` when ``want_grad`` is
false) together with the unnormalised loss of each row. Guesses are either
probabilities ``p`` (rows of a softmax) or, with ``from_logits``, the logits
``z``; in both cases the gradient is taken with respect to the logits:

    dL/dz_j = p_j * S - w_j * t_j,     S = sum_c w_c * t_c

which is ``p - t`` for unweighted targets that sum to one (the v4 formula,
computed literally as ``(p - t) / n`` so that the bits match Thinc's).

Memory: the sparse path allocates the gradient once and nothing else of
its size; row-wise sums of ``log p`` are taken in blocks of rows.
"""
from typing import Optional, Tuple

import numpy

#: Guard inside the logarithm of probability guesses: log(p + 1e-9), as Thinc v4.
EPS = 1e-9
#: Elements per block when a row-wise reduction needs a temporary.
BLOCK_ELEMENTS = 1 << 18


def row_blocks(n_rows: int, n_cols: int):
    step = max(1, BLOCK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def softmax_and_lse(xp, logits) -> Tuple[object, object]:
    """Return ``(softmax(z), logsumexp(z))`` row-wise; the softmax is a fresh array."""
    z_max = logits.max(axis=1, keepdims=True)
    probs = xp.subtract(logits, z_max)
    xp.exp(probs, out=probs)
    sums = probs.sum(axis=1, keepdims=True)
    probs /= sums
    return probs, (z_max + xp.log(sums))[:, 0]


def rowwise_weighted_log_sum(xp, guesses, weights, *, lse=None):
    """sum_c w_c * log p_c for each row, without a full-size temporary.

    ``log p`` is ``log(p + EPS)`` for probabilities, or ``z - lse`` for logits
    (when ``lse`` is given). ``weights`` is None (all ones), ``(1, C)`` or ``(N, C)``.
    """
    n, c = guesses.shape
    if lse is not None:  # logits: sum_c w_c z_c - lse * sum_c w_c, no log needed
        if weights is None:
            return guesses.sum(axis=1) - c * lse
        if weights.shape[0] == 1:
            return guesses @ weights[0] - lse * weights.sum()
    out = xp.empty((n,), dtype=guesses.dtype)
    for rows in row_blocks(n, c):
        block = guesses[rows] - lse[rows, None] if lse is not None else xp.log(guesses[rows] + EPS)
        if weights is not None:
            block *= weights if weights.shape[0] == 1 else weights[rows]
        out[rows] = block.sum(axis=1)
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
        out[rows] = block.sum(axis=1)
    return out


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
    """
    n, c = guesses.shape
    rows = xp.arange(n)
    on = 1.0 - label_smoothing
    off = label_smoothing / (c - 1) if label_smoothing else 0.0
    row_w, elem_w = split_weights(weights)
    if from_logits:
        probs, lse = softmax_and_lse(xp, guesses)
        gold_p = probs[rows, labels]
        log_gold = guesses[rows, labels] - lse
    else:
        probs, lse = guesses, None
        gold_p = guesses[rows, labels]
        log_gold = xp.log(gold_p + EPS)
    if elem_w is None:
        losses = -on * log_gold if on != 1.0 else -log_gold
        if off:
            losses -= off * (rowwise_weighted_log_sum(xp, guesses, None, lse=lse) - log_gold)
    else:
        elem_w = xp.broadcast_to(elem_w, (n, c))
        gold_w = elem_w[rows, labels]
        losses = -(on - off) * gold_w * log_gold
        if off:
            losses -= off * rowwise_weighted_log_sum(xp, guesses, elem_w, lse=lse)
    grad = None
    if want_grad:
        if elem_w is None:
            # (p - t) / n, literally, so that the bits equal Thinc's gradient.
            if from_logits:
                grad = probs  # the softmax buffer is ours to overwrite
                if off:
                    grad -= off
                if divisor != 1:
                    grad /= divisor
            elif off:
                grad = xp.subtract(probs, off)
                if divisor != 1:
                    grad /= divisor
            elif divisor != 1:
                grad = xp.divide(probs, divisor)
            else:
                grad = probs.copy()
            grad[rows, labels] = (gold_p - on) / divisor
            if negative is not None:
                neg = xp.nonzero(negative)[0]
                grad[neg] = 0
                grad[neg, labels[neg]] = gold_p[neg] / divisor
        else:
            total = off * elem_w.sum(axis=1) + (on - off) * gold_w if off else on * gold_w
            grad = probs if from_logits else xp.empty_like(probs)
            xp.multiply(probs, total[:, None], out=grad)
            if off:
                grad -= off * elem_w
            grad[rows, labels] = gold_p * total - on * gold_w
            if negative is not None:
                neg = xp.nonzero(negative)[0]
                grad[neg] = 0
                grad[neg, labels[neg]] = gold_w[neg] * gold_p[neg]
            if divisor != 1:
                grad /= divisor
    if negative is not None:
        losses = xp.where(negative, 0, losses)
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
        probs, lse = softmax_and_lse(xp, guesses)
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
    if missing is not None:
        losses = xp.where(missing, 0, losses)
        if grad is not None:
            grad[missing] = 0
    if row_w is not None:
        losses = losses * row_w[:, 0]
        if grad is not None:
            grad *= row_w
    return grad, losses


def softmax_focal_cross_entropy(
    xp,
    guesses,
    target,
    *,
    gamma: float,
    from_logits: bool = False,
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
        probs, lse = softmax_and_lse(xp, guesses)
        log_p = guesses - lse[:, None]
    else:
        probs = guesses
        log_p = xp.log(guesses + EPS)
    weighted = target if weights is None else target * weights
    q = 1.0 - probs
    modulator = q**gamma
    losses = -(weighted * modulator * log_p).sum(axis=1)
    grad = None
    if want_grad:
        positive_q = q > 0
        # p log p / (1 - p) -> -1 as p -> 1; the factor gamma (1-p)^gamma then sends the term to 0.
        ratio = xp.where(positive_q, probs * log_p / xp.where(positive_q, q, 1.0), -1.0)
        g = weighted * (gamma * modulator * ratio - modulator)
        grad = g - probs * g.sum(axis=1, keepdims=True)
    if negative is not None:
        neg = xp.nonzero(negative)[0]
        y = labels[neg]
        p_y = probs[neg, y]
        w_y = xp.ones_like(p_y) if weights is None else xp.broadcast_to(weights, (n, c))[neg, y]
        scale = w_y * p_y**gamma
        log_not = xp.log(1.0 - p_y + EPS)
        losses[neg] = -scale * log_not
        if grad is not None:
            grad[neg] = 0
            grad[neg, y] = scale * (p_y - gamma * (1.0 - p_y) * log_not)
    if grad is not None and divisor != 1:
        grad /= divisor
    if missing is not None:
        losses = xp.where(missing, 0, losses)
        if grad is not None:
            grad[missing] = 0
    return grad, losses


def kl_divergence(
    xp,
    guesses,
    target,
    *,
    from_logits: bool = False,
    temperature: float = 1.0,
    weights=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """``T^2 * KL(t || q)`` with ``q = softmax(z / T)``, per row.

    ``z`` are the logits (``from_logits``) or ``log(p + EPS)`` for
    probabilities (with ``T = 1``, ``q = p`` exactly). Gradient w.r.t. the
    logits: ``T * (q * sum(t) - t)``, weighted per element by ``weights``.
    """
    t_pos = target > 0
    t_log_t = xp.where(t_pos, target * xp.log(xp.where(t_pos, target, 1.0)), 0.0)
    if from_logits or temperature != 1.0:
        scaled = guesses / temperature if from_logits else xp.log(guesses + EPS) / temperature
        q, lse = softmax_and_lse(xp, scaled)
        log_q = scaled - lse[:, None]
    else:
        q, log_q = guesses, xp.log(guesses + EPS)
    terms = t_log_t - target * log_q
    if weights is not None:
        terms *= weights
    t2 = temperature * temperature
    losses = t2 * terms.sum(axis=1)
    grad = None
    if want_grad:
        weighted = target if weights is None else target * weights
        grad = q * weighted.sum(axis=1, keepdims=True) - weighted
        grad *= temperature
        if divisor != 1:
            grad /= divisor
    return grad, losses


def distribution_problem(xp, x, *, atol: Optional[float] = None) -> Optional[str]:
    """None if every row of ``x`` lies in [0, 1] and sums to 1, else the problem.

    Two reductions (min, row sums); NaN and inf fail them too and are then
    diagnosed. The tolerance on the sums is ``1e-5 + C * eps(dtype)``: the
    rounding a softmax of C columns can accumulate.
    """
    if x.size == 0:
        return None
    n, c = x.shape
    if atol is None:
        atol = 1e-5 + c * float(numpy.finfo(x.dtype).eps)
    sums = x.sum(axis=1)
    if bool((x.min() >= 0) & (xp.abs(sums - 1.0) <= atol).all()):
        return None
    if not bool(xp.isfinite(sums).all()):
        return "contains NaN or infinite values"
    if bool(x.min() < 0) or bool(x.max() > 1):
        return "must lie in [0, 1]"
    worst = int(xp.argmax(xp.abs(sums - 1.0)))
    return f"rows must sum to 1 (row {worst} sums to {float(sums[worst]):.6g})"
