"""Maths of the KL divergence of softmax outputs (knowledge distillation, Hinton et al. 2015).

Same conventions as :mod:`thinc_losses_plus.functional.softmax`.
"""
from typing import Optional

import numpy

from .softmax import BLOCK_ELEMENTS, EPS, row_sums, scale_rows, softmax_and_lse


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

    Row loss ``T^2 * sum_c w_c t_c (log t_c - log q_c)`` with ``0 log 0 = 0``:
    ``log t`` is taken of ``max(t, tiny)`` (the smallest normal number), so a
    zero target gives ``0 * finite = 0`` (a subnormal target moves its term
    by less than ``1e-36``), and the products are summed by ``einsum``.

    Memory: ``q`` is computed in the one array that becomes the gradient
    (the softmax's own fresh array when ``T = 1``: ``z / 1`` is ``z``); the
    row terms are summed in blocks of rows (:data:`KL_BLOCKS` of them at
    most), with two temporaries of a block each (``log q`` recomputed per
    block, then ``log t - log q``); the losses go over the rows of ``lse``;
    the rows of ``q`` are scaled by ``sum(t)`` with :func:`~thinc_losses_plus.functional.softmax.scale_rows`.
    """
    n, c = guesses.shape
    softmax = from_logits or temperature != 1.0
    if from_logits and temperature == 1.0:
        q, lse = softmax_and_lse(xp, guesses, span=span)  # a fresh array: no copy of z / 1
    elif softmax:
        scaled = guesses / temperature if from_logits else xp.log(guesses + EPS) / temperature
        q, lse = softmax_and_lse(xp, scaled, span=span, overwrite=True)  # q is the scaled buffer
        del scaled
    else:
        q, lse = guesses, None
    t2 = temperature * temperature
    tiny = numpy.finfo(target.dtype).tiny if target.dtype.kind == "f" else numpy.finfo("float64").tiny
    # With a softmax, each block's losses go over its rows of lse (no longer needed there).
    losses = lse if softmax and lse.dtype == target.dtype else None
    for rows in kl_blocks(n, c):
        t = target[rows]
        if from_logits and temperature == 1.0:
            log_q = xp.subtract(guesses[rows], lse[rows, None])  # z / 1 is z
        elif from_logits:
            log_q = guesses[rows] / temperature
            log_q -= lse[rows, None]
        else:
            log_q = guesses[rows] + EPS
            xp.log(log_q, out=log_q)
            if softmax:
                log_q /= temperature
                log_q -= lse[rows, None]
        # log t - log q, with log max(t, tiny): 0 log 0 = 0 (truths are checked: >= 0, no NaN)
        terms = xp.maximum(t, tiny)
        xp.log(terms, out=terms)
        terms -= log_q
        del log_q
        if weights is not None:
            terms *= weights if weights.shape[0] == 1 else weights[rows]
        block = _row_dots(xp, t, terms)
        del terms  # before the next block's temporaries are made
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
        total = row_sums(xp, weighted)
        grad = scale_rows(xp, q, total, out=q if softmax else xp.empty_like(q, dtype=numpy.result_type(q.dtype, total.dtype)))
        grad -= weighted
        if temperature != 1.0:  # x * 1.0 is x
            grad *= temperature
        if divisor != 1:
            grad /= divisor
    return grad, losses


def _row_dots(xp, a, b):
    """``sum(a * b, axis=1)`` without a temporary of the block's size (numpy's ``einsum``)."""
    if xp is numpy:
        return numpy.einsum("ij,ij->i", a, b)
    return (a * b).sum(axis=1)


#: Blocks of rows (at most) for the KL divergence's row sums: each block's two temporaries
#: are about 2 / KL_BLOCKS of the gradient (1.1x the gradient at 4096x50 asks for 30 or more).
KL_BLOCKS = 40
#: Fewest elements of a block (small batches: fewer, larger blocks; their time is the calls').
KL_MIN_ELEMENTS = 512


def kl_blocks(n_rows: int, n_cols: int):
    """Slices of rows: about 1 / :data:`KL_BLOCKS` of the rows, at least
    :data:`KL_MIN_ELEMENTS` and at most ``BLOCK_ELEMENTS`` elements (one row at least)."""
    cols = max(n_cols, 1)
    step = max(-(-n_rows // KL_BLOCKS), -(-KL_MIN_ELEMENTS // cols))
    step = max(1, min(step, BLOCK_ELEMENTS // cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))
