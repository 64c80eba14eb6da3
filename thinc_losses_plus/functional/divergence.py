"""Maths of the KL divergence of softmax outputs (knowledge distillation, Hinton et al. 2015).

Same conventions as :mod:`thinc_losses_plus.functional.softmax`.
"""
from typing import Optional

from .softmax import EPS, row_blocks, softmax_and_lse


def kl_divergence(
    xp,
    guesses,
    target,
    *,
    from_logits: bool = False,
    temperature: float = 1.0,
    span: Optional[float] = None,
    weights=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """``T^2 * KL(t || q)`` with ``q = softmax(z / T)``, per row.

    ``z`` are the logits (``from_logits``) or ``log(p + EPS)`` for
    probabilities (with ``T = 1``, ``q = p`` exactly). Gradient w.r.t. the
    logits: ``T * (q * sum(t) - t)``, weighted per element by ``weights``.

    Memory: ``q`` is computed in the one array that becomes the gradient;
    the row terms ``t log t - t log q`` are summed in blocks of rows
    (:data:`KL_BLOCKS` of them at most), ``log q`` recomputed per block.
    """
    n, c = guesses.shape
    softmax = from_logits or temperature != 1.0
    if softmax:
        scaled = guesses / temperature if from_logits else xp.log(guesses + EPS) / temperature
        q, lse = softmax_and_lse(xp, scaled, span=span, overwrite=True)  # q is the scaled buffer
        del scaled
    else:
        q, lse = guesses, None
    t2 = temperature * temperature
    # With a softmax, each block's losses go over its rows of lse (no longer needed there).
    losses = lse if softmax and lse.dtype == target.dtype else None
    for rows in row_blocks(n, c, max_blocks=KL_BLOCKS):
        t = target[rows]
        # t log t with 0 log 0 = 0: the values of where(t > 0, t * log(where(t > 0, t, 1)), 0),
        # in one temporary (truths are checked: no NaN, so t <= 0 is "not t > 0").
        zero = t <= 0
        terms = t.copy()
        xp.copyto(terms, 1.0, where=zero)
        xp.log(terms, out=terms)
        xp.multiply(t, terms, out=terms)
        xp.copyto(terms, 0.0, where=zero)
        del zero
        if from_logits and temperature == 1.0:
            log_q = guesses[rows] - lse[rows, None]  # z / 1 is z
        elif from_logits:
            log_q = guesses[rows] / temperature
            log_q -= lse[rows, None]
        else:
            log_q = guesses[rows] + EPS
            xp.log(log_q, out=log_q)
            if softmax:
                log_q /= temperature
                log_q -= lse[rows, None]
        terms -= xp.multiply(t, log_q, out=log_q)
        del log_q
        if weights is not None:
            terms *= weights if weights.shape[0] == 1 else weights[rows]
        block = terms.sum(axis=1)
        if t2 != 1.0:  # x * 1.0 is x
            block *= t2
        if losses is None:
            losses = xp.empty((n,), dtype=block.dtype)
        losses[rows] = block
    if losses is None:
        losses = xp.zeros((n,), dtype=q.dtype)
    del lse
    grad = None
    if want_grad:
        weighted = target if weights is None else target * weights
        total = weighted.sum(axis=1, keepdims=True)
        grad = xp.multiply(q, total, out=q if softmax else None)
        grad -= weighted
        grad *= temperature
        if divisor != 1:
            grad /= divisor
    return grad, losses


#: Blocks of rows (at most) for the KL divergence's row sums: each block's temporaries
#: are about 2.5 / KL_BLOCKS of the gradient (1.1x the gradient at 4096x50 asks for 48 or more).
KL_BLOCKS = 80

