"""Maths of the asymmetric loss (Ridnik et al. 2021, sigmoid outputs): plain functions.

Elementwise, as :mod:`thinc_losses_plus.functional.sigmoid`: :func:`asymmetric_loss`
and :func:`asymmetric_loss_with_logits` return the row sums of the weighted loss and
its derivative, weighted and divided by ``divisor``; :func:`asymmetric_terms` and
:func:`asymmetric_terms_with_logits` are the elementwise maths of one block.

Memory (SPEC section 8): row blocks (:mod:`thinc_losses_plus.functional.blocks`),
every temporary of a block's size written with ``out=`` into scratch borrowed
from the gradient's rows still to be written: the peak of a call is the
gradient plus under 10% of it at 4096x50 and 32768x1000.
"""
import functools
import math

import numpy

from .blocks import SMALL_ARRAY, blocked_elementwise, clip_function, grad_finisher, power_into, put_terms, row_total
from .sigmoid import PROB_EPS


# Asymmetric loss (sigmoid outputs) ----------------------------------------------------
#
# Elementwise, with a dozen intermediate values per entry: computed by row blocks
# (:func:`~thinc_losses_plus.functional.blocks.blocked_elementwise`), every
# intermediate written with ``out=`` into the block's scratch arrays (borrowed
# from the gradient's rows still to be written), taken from and given back to a
# free list as they fall free: the peak memory is the gradient plus a few percent,
# and each block is in cache while its row losses are reduced.


class _CountingSlots(list):
    """A free list that records how few arrays were ever left in it (:func:`asymmetric_slots`)."""

    def __init__(self, items):
        super().__init__(items)
        self.fewest = len(items)

    def pop(self, *args):
        item = super().pop(*args)
        self.fewest = min(self.fewest, len(self))
        return item


#: Scratch arrays offered to the dry run of :func:`asymmetric_slots` (more than any settings use).
_MAX_SLOTS = 12


@functools.lru_cache(maxsize=64)
def asymmetric_slots(logits: bool, gamma_pos: float, gamma_neg: float, clip: float, want_grad: bool) -> int:
    """How many scratch arrays :func:`asymmetric_terms` (``logits``:
    :func:`asymmetric_terms_with_logits`) holds at once with these settings,
    counted on a dry run over one entry (the count does not depend on the values)."""
    maths = asymmetric_terms_with_logits if logits else asymmetric_terms
    free = _CountingSlots([numpy.empty((1, 1)) for _ in range(_MAX_SLOTS)])
    x, t = numpy.full((1, 1), 0.5), numpy.full((1, 1), 0.5)
    with numpy.errstate(all="ignore"):
        maths(
            numpy, x, t, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, want_grad=want_grad,
            out=numpy.empty((1, 1)), scratch=free,
        )
    return _MAX_SLOTS - free.fewest


def _free_list(xp, like, scratch):
    """The block's free list of scratch arrays: ``scratch`` itself (a list, consumed), or fresh arrays."""
    if scratch is None:
        return [xp.empty_like(like) for _ in range(_MAX_SLOTS)]
    return scratch if isinstance(scratch, list) else list(scratch)


def _shifted_negative(xp, p_m, ompm, *, gamma_neg: float, clip: float, want_grad: bool, take, give, keep_ompm: bool):
    """The negative entries' ``(mn, d_neg)``: ``mn = p_m^gn nln`` with ``nln = -log(1 - p_m)``
    and ``d_neg = d mn / d p_m`` (None without ``want_grad``), in slots taken from the free list.

    ``d_neg = p_m^gn / (1 - p_m) + gn mn / p_m``: where ``p <= m`` (``p_m = 0``,
    ``nln = 0``) both terms are 0, and for ``gn = 0`` it is ``[p > m] / (1 - p_m)``.
    ``p_m`` is a slot of its own when ``clip`` (given back here; otherwise the
    clipped probability, ``>= eps``, which needs no floor). ``ompm`` (``1 - p_m``)
    is a slot of its own unless ``keep_ompm`` (then it is kept for the caller).
    """
    nln = xp.log(ompm, out=take())
    xp.negative(nln, out=nln)
    d_neg = None
    if gamma_neg:
        mod = power_into(xp, p_m, gamma_neg, take())
        mn = xp.multiply(mod, nln, out=nln)
        if want_grad:
            d_neg = xp.divide(mod, ompm, out=mod)
            extra = xp.multiply(mn, gamma_neg, out=take() if keep_ompm else ompm)
            if clip:
                extra /= clip_function(xp)(p_m, float(numpy.finfo(p_m.dtype).tiny), math.inf, out=p_m)
            else:
                extra /= p_m
            d_neg += extra
            give(extra)
        else:
            give(mod)
            if not keep_ompm:
                give(ompm)
    else:
        mn = nln
        if want_grad:
            d_neg = xp.divide(1.0, ompm, out=take() if keep_ompm else ompm)
            if clip:  # the loss is flat where p <= m
                d_neg *= xp.greater(p_m, 0, out=p_m)
        elif not keep_ompm:
            give(ompm)
    if clip:
        give(p_m)
    return mn, d_neg


def asymmetric_terms(
    xp, probs, targets, *, gamma_pos: float, gamma_neg: float, clip: float, eps: float = PROB_EPS,
    want_grad: bool = True, out=None, scratch=None,
):
    """Elementwise asymmetric loss of probabilities and its derivative (see :func:`asymmetric_loss`).

    Returns ``(grad or None, elementwise loss)``, unweighted and undivided: the
    gradient written into ``out``, every other array of the block's size into
    the arrays of ``scratch``, a list used as a free list (:func:`asymmetric_slots`
    of them; fresh arrays without it).
    """
    free = _free_list(xp, probs, scratch)
    take, give = free.pop, free.append
    t, clip_to = targets, clip_function(xp)
    if out is None and want_grad:
        out = xp.empty_like(probs)
    p = clip_to(probs, eps, 1.0 - eps, out=take())
    omp = xp.subtract(1.0, p, out=take()) if gamma_pos else None  # 1 - p
    if clip:  # shifting: p_m = max(p - m, 0) and 1 - p_m
        p_m = xp.subtract(p, clip, out=take())
        clip_to(p_m, 0.0, math.inf, out=p_m)
        ompm = xp.subtract(1.0, p_m, out=take())
    else:
        p_m = p
        ompm = omp if omp is not None else xp.subtract(1.0, p, out=take())
    mn, d_neg = _shifted_negative(
        xp, p_m, ompm, gamma_neg=gamma_neg, clip=clip, want_grad=want_grad, take=take, give=give,
        keep_ompm=ompm is omp,
    )
    # the positive entries: -(1 - p)^gp log p, derivative -(1 - p)^gp (1 / p - gp log p / (1 - p))
    log_p = xp.log(p, out=take())
    mod_pos = power_into(xp, omp, gamma_pos, take()) if gamma_pos else None
    d_pos = None
    if want_grad:
        d_pos = xp.divide(1.0, p, out=p)
        if gamma_pos:
            ratio = xp.multiply(log_p, gamma_pos, out=out)
            ratio /= omp
            d_pos -= ratio
            d_pos *= mod_pos
    else:
        give(p)
    if mod_pos is not None:
        log_p *= mod_pos
        give(mod_pos)
        give(omp)
    log_p *= t
    rest = xp.subtract(1.0, t, out=take())
    mn *= rest
    mn -= log_p  # the loss: -t (1 - p)^gp log p + (1 - t) p_m^gn nln
    if not want_grad:
        return None, mn
    grad = xp.multiply(rest, d_neg, out=out)
    d_pos *= t
    grad -= d_pos
    return grad, mn


def asymmetric_terms_with_logits(
    xp, logits, targets, *, gamma_pos: float, gamma_neg: float, clip: float, want_grad: bool = True,
    out=None, scratch=None,
):
    """Elementwise asymmetric loss of logits and its derivative (see :func:`asymmetric_loss_with_logits`).

    Returns ``(grad or None, elementwise loss)`` as :func:`asymmetric_terms`.
    """
    free = _free_list(xp, logits, scratch)
    take, give = free.pop, free.append
    x, t, clip_to = logits, targets, clip_function(xp)
    if out is None:
        out = xp.empty_like(logits)
    u = xp.abs(x, out=take())
    xp.negative(u, out=u)
    xp.exp(u, out=u)
    u += 1.0  # 1 + exp(-|x|)
    # s(x) = 1/2 + sign(x) (s(|x|) - 1/2), with one exp for both: only values below
    # float epsilon lose their relative precision (the logs below do not use them)
    p = xp.divide(1.0, u, out=take())
    p -= 0.5
    xp.copysign(p, x, out=p)
    p += 0.5
    softplus = xp.log(u, out=u)
    softplus += clip_to(x, 0.0, math.inf, out=out)  # softplus(x) = -log(1 - p)
    if not clip:
        return _unshifted_logits(xp, x, t, p, softplus, gamma_pos, gamma_neg, want_grad, out, take, give)
    nlp = xp.subtract(softplus, x, out=softplus)  # softplus(-x) = -log p
    p_m = xp.subtract(p, clip, out=take())
    clip_to(p_m, 0.0, math.inf, out=p_m)
    ompm = xp.subtract(1.0, p_m, out=take())
    mn, d_neg = _shifted_negative(
        xp, p_m, ompm, gamma_neg=gamma_neg, clip=clip, want_grad=want_grad, take=take, give=give, keep_ompm=False
    )
    omp = xp.subtract(1.0, p, out=take())
    d_pos = None
    if want_grad:
        chain = xp.multiply(p, omp, out=take())  # dp/dx = p (1 - p)
        d_neg *= chain
        give(chain)
    mod_pos = power_into(xp, omp, gamma_pos, take()) if gamma_pos else None
    if want_grad:
        if gamma_pos:  # -(1 - p)^gp (gp p softplus(-x) + 1 - p)
            d_pos = xp.multiply(p, nlp, out=p)
            d_pos *= gamma_pos
            d_pos += omp
            d_pos *= mod_pos
        else:
            d_pos = omp
    if mod_pos is not None:
        nlp *= mod_pos
        give(mod_pos)
        give(omp)  # d_pos is in p's slot
    return _finish_logits(xp, t, mn, nlp, d_neg, d_pos, want_grad, out, take)


def _unshifted_logits(xp, x, t, p, softplus, gamma_pos, gamma_neg, want_grad, out, take, give):
    """:func:`asymmetric_terms_with_logits` for ``clip = 0``: no division, finite for any logit."""
    nln = softplus  # -log(1 - p)
    nlp = xp.subtract(softplus, x, out=take())  # -log p
    omp = xp.subtract(1.0, p, out=take())
    mod_pos = power_into(xp, omp, gamma_pos, take()) if gamma_pos else None
    d_pos = None
    if want_grad:
        if gamma_pos:  # -(1 - p)^gp (gp p softplus(-x) + 1 - p)
            d_pos = xp.multiply(p, nlp, out=take())
            d_pos *= gamma_pos
            d_pos += omp
            d_pos *= mod_pos
        else:
            d_pos = omp
    if mod_pos is not None:
        nlp *= mod_pos
        give(mod_pos)
    mod_neg = power_into(xp, p, gamma_neg, take()) if gamma_neg else None
    d_neg = None
    if want_grad:  # d/dx [p^gn softplus(x)] = p^gn (p + gn (1 - p) softplus(x))
        if gamma_neg:
            d_neg = xp.multiply(omp, nln, out=omp if gamma_pos else take())
            d_neg *= gamma_neg
            d_neg += p
            d_neg *= mod_neg
        else:
            d_neg = p
    if mod_neg is not None:
        nln *= mod_neg
        give(mod_neg)
    return _finish_logits(xp, t, nln, nlp, d_neg, d_pos, want_grad, out, take)


def _finish_logits(xp, t, mn, nlp, d_neg, d_pos, want_grad, out, take):
    """loss ``t nlp + (1 - t) mn`` and gradient ``(1 - t) d_neg - t d_pos``."""
    nlp *= t
    rest = xp.subtract(1.0, t, out=take())
    mn *= rest
    mn += nlp
    if not want_grad:
        return None, mn
    grad = xp.multiply(rest, d_neg, out=out)
    d_pos *= t
    grad -= d_pos
    return grad, mn


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

    Memory: by row blocks (:func:`~thinc_losses_plus.functional.blocks.blocked_elementwise`),
    the block's values in scratch borrowed from the gradient's rows still to be
    written: the peak is the gradient plus about 5% of it.

    >>> import numpy
    >>> _, loss = asymmetric_loss(numpy, numpy.asarray([[0.9, 0.55]]), numpy.asarray([[1.0, 0.0]]), gamma_pos=0.0, gamma_neg=4.0, clip=0.05)
    >>> round(float(loss[0]), 5)  # -log(0.9) - 0.5**4 log(0.5)
    0.14868
    """
    settings = dict(gamma_pos=float(gamma_pos), gamma_neg=float(gamma_neg), clip=float(clip))
    return _elementwise(
        xp, asymmetric_terms, probs, targets, weights=weights, divisor=divisor, want_grad=want_grad,
        n_slots=asymmetric_slots(False, want_grad=want_grad, **settings), terms=terms, eps=eps, **settings,
    )


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

    Returns ``(grad or None, row losses (N,))`` (with ``terms``, as
    :func:`asymmetric_loss`). Memory: as :func:`asymmetric_loss`.
    """
    settings = dict(gamma_pos=float(gamma_pos), gamma_neg=float(gamma_neg), clip=float(clip))
    return _elementwise(
        xp, asymmetric_terms_with_logits, logits, targets, weights=weights, divisor=divisor, want_grad=want_grad,
        n_slots=asymmetric_slots(True, want_grad=want_grad, **settings), terms=terms, **settings,
    )


def _elementwise(xp, maths, x, targets, *, weights, divisor, want_grad, n_slots, terms, **settings):
    """:func:`~thinc_losses_plus.functional.blocks.blocked_elementwise`, or for a small ``x``
    (:data:`SMALL_ARRAY`) the same maths in one pass with scratch arrays of its own (the same bits)."""
    if x.size > SMALL_ARRAY:
        return blocked_elementwise(
            xp, maths, x, targets, weights=weights, divisor=divisor, want_grad=want_grad, n_slots=n_slots,
            terms=terms, **settings,
        )
    work = terms if terms is not None and not want_grad else xp.empty(x.shape, dtype=x.dtype)
    scratch = [xp.empty_like(x) for _ in range(n_slots)]
    grad, loss = maths(xp, x, targets, out=work, scratch=scratch, want_grad=want_grad, **settings)
    per_example = row_total(xp, loss, weights)
    if grad is not None:
        grad_finisher(xp, x.dtype, divisor)(grad, weights)
    elif work is terms:
        put_terms(xp, work, loss, weights)
    return (work if want_grad or work is terms else None), per_example
