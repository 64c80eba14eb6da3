"""Maths of the regression family: plain functions, no settings objects, no checks.

Every function takes the array module ``xp`` first (as Thinc's ``ops``), then
the guesses ``g`` and the targets ``t`` (C-contiguous arrays of one float
dtype, ``(N, C)`` or ``(N,)``), then keyword-only settings, and returns
``(gradient or None, per-example losses)``:

* the loss of example ``i`` is ``sum_c w_ic f(g_ic, t_ic)``: the columns of a
  row are summed (a 1-d input has one value per example);
* the gradient is ``w * df/dg / divisor``, the exact derivative with respect
  to the guesses (a subgradient at a kink), already divided by ``divisor``;
* ``weights`` is ``None`` or broadcastable to the guesses (``(N, C)``,
  ``(N, 1)``, or ``(N,)`` for 1-d guesses);
* ``terms`` (with ``want_grad`` false) is None, or an array of the guesses'
  shape and dtype: the elementwise ``w_ic f(g_ic, t_ic)`` are written into it
  in the same pass and it is returned in the gradient's place (the
  unreduced losses, ``get_loss_per_element``).

Nothing is checked here: a non-finite input or an overflow gives a
non-finite loss, which the caller's checks diagnose. Inputs are never
written; each function allocates the gradient once and works through it in
row blocks (:mod:`thinc_losses_plus.functional.blocks`): a block's
temporaries live in scratch borrowed from the gradient's rows still to be
written, so the peak memory is the gradient plus a few percent, with the
bits of one pass over the whole arrays.
"""
import math
from typing import Any, Optional, Tuple

import numpy

from .._core import divide_by, scale_grad
from .blocks import clip_function, einsum_function, grad_finisher, put_terms, row_total, rows_of, scratch_blocks

Array = Any
Result = Tuple[Optional[Array], Array]

#: Beyond this |d|, log(cosh(d)) = log(cosh(20)) + (|d| - 20) to within 5e-18.
LOGCOSH_LINEAR = 20.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def row_dot(xp, a: Array, b: Array, weights=None, out=None) -> Array:
    """Per-example ``sum_c a_c * b_c * w_c``, as :func:`thinc_losses_plus._core.row_sum`
    (into ``out`` when given)."""
    if a.ndim == 1:
        out = xp.multiply(a, b, out=out)
        if weights is not None:
            out *= weights.reshape(out.shape)
        return out
    einsum, into = einsum_function(xp), ({} if out is None else {"out": out})  # c_einsum refuses out=None
    if weights is None:
        return einsum("ij,ij->i", a, b, **into)
    if weights.shape == a.shape:
        return einsum("ij,ij,ij->i", a, b, weights, **into)
    out = einsum("ij,ij->i", a, b, **into)
    out *= weights.reshape(-1)
    return out


def blocks(xp, work: Array, n_slots: int, weights):
    """``(rows, row weights, scratch)`` for each row block of ``work`` (the gradient's buffer,
    written block by block): :func:`thinc_losses_plus.functional.blocks.scratch_blocks`.

    A block's temporaries live in its ``n_slots`` scratch arrays (views of the
    gradient's rows still to be written, then a few buffers of a few rows), so
    the peak memory is the gradient plus about 5% of it, and the block is in
    cache while its row losses are reduced and its gradient written.
    """
    if weights is not None and (weights.ndim == 0 or weights.shape[0] != work.shape[0]):
        weights = xp.broadcast_to(weights, work.shape)
    for rows, scratch in scratch_blocks(xp, work, n_slots):
        yield rows, rows_of(weights, rows), scratch


def work_buffer(xp, guesses, want_grad: bool, terms):
    """The buffer written block by block: the gradient, else ``terms`` (when given), else scratch."""
    return terms if terms is not None and not want_grad else xp.empty(guesses.shape, dtype=guesses.dtype)


def result(work, want_grad: bool, terms):
    """What goes in the gradient's place: the gradient, the terms, or None."""
    return work if want_grad or (terms is not None and work is terms) else None


def half_squared_error(
    xp, guesses, targets, *, weights=None, divisor: float = 1, want_grad: bool = True, terms=None
) -> Result:
    """``f = 0.5 (g - t)^2``; gradient w.r.t. the guesses ``g - t``."""
    d = guesses - targets
    per_example = 0.5 * row_dot(xp, d, d, weights)
    if terms is not None and not want_grad:
        square = xp.multiply(d, d, out=d)
        square *= 0.5
        return put_terms(xp, terms, square, weights), per_example
    grad = scale_grad(d, weights, divisor) if want_grad else None
    return grad, per_example


def absolute_error(
    xp, guesses, targets, *, weights=None, divisor: float = 1, want_grad: bool = True, terms=None
) -> Result:
    """``f = |g - t|``; subgradient w.r.t. the guesses ``sign(g - t)`` (0 where ``g = t``).

    The loss is ``sign(d) . d`` (exact: ``sign`` is -1, 0 or 1); ``d`` lives in
    one scratch block, ``sign(d)`` in the gradient's block.
    """
    work = work_buffer(xp, guesses, want_grad, terms)
    per_example = xp.empty(guesses.shape[:1], dtype=guesses.dtype)
    finish = grad_finisher(xp, work.dtype, divisor)
    for rows, w, (d,) in blocks(xp, work, 1, weights):
        xp.subtract(guesses[rows], targets[rows], out=d)
        if not want_grad:
            a = xp.abs(d, out=d)
            row_total(xp, a, w, out=per_example[rows])
            if terms is not None:
                put_terms(xp, work[rows], a, w)
            continue
        s = xp.sign(d, out=work[rows])
        row_dot(xp, s, d, w, out=per_example[rows])
        finish(s, w)
    return result(work, want_grad, terms), per_example


def huber_error(
    xp, guesses, targets, *, delta: float, weights=None, divisor: float = 1, want_grad: bool = True, terms=None
) -> Result:
    """Huber's ``f = 0.5 d^2`` if ``|d| < delta`` else ``delta (|d| - delta / 2)``, ``d = g - t``.

    Gradient w.r.t. the guesses ``c = clip(d, -delta, delta)``. Without a
    branch, ``f = c d - c^2 / 2`` (both terms are non-negative multiples of
    the same sign and ``c d >= c^2``, so nothing cancels badly).
    """
    # A delta beyond the dtype's range clips nothing: cap it (exact).
    delta = min(delta, float(numpy.finfo(guesses.dtype).max))
    work = work_buffer(xp, guesses, want_grad, terms)
    per_example = xp.empty(guesses.shape[:1], dtype=guesses.dtype)
    finish, clip = grad_finisher(xp, work.dtype, divisor), clip_function(xp)
    for rows, w, (d,) in blocks(xp, work, 1, weights):  # d in a scratch, c in the gradient's block
        xp.subtract(guesses[rows], targets[rows], out=d)
        c = clip(d, -delta, delta, out=work[rows])
        loss = row_dot(xp, c, d, w, out=per_example[rows])
        loss -= 0.5 * row_dot(xp, c, c, w)
        if want_grad:
            finish(c, w)
        elif terms is not None:  # c (d - c / 2), over c
            d -= xp.multiply(c, 0.5)
            c *= d
            put_terms(xp, c, c, w)
    return result(work, want_grad, terms), per_example


def smooth_l1_error(
    xp, guesses, targets, *, beta: float, weights=None, divisor: float = 1, want_grad: bool = True, terms=None
) -> Result:
    """Smooth L1 ``f = 0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - beta / 2``, ``d = g - t``.

    Gradient w.r.t. the guesses ``u = clip(d, -beta, beta) / beta``; the loss
    is ``u d - u c / 2`` with ``c = clip(d, -beta, beta)``. ``beta = 0`` (or
    a beta that is 0 in the dtype) is the absolute error.
    """
    if guesses.dtype.type(beta) == 0:
        return absolute_error(xp, guesses, targets, weights=weights, divisor=divisor, want_grad=want_grad, terms=terms)
    bound = min(beta, float(numpy.finfo(guesses.dtype).max))
    work = work_buffer(xp, guesses, want_grad, terms)
    per_example = xp.empty(guesses.shape[:1], dtype=guesses.dtype)
    finish, clip = grad_finisher(xp, work.dtype, divisor), clip_function(xp)
    # d in one scratch; u in the gradient's block; then c over d (clipping twice costs less
    # than a second scratch, which would double the number of blocks at 4096x50)
    for rows, w, (d,) in blocks(xp, work, 1, weights):
        xp.subtract(guesses[rows], targets[rows], out=d)
        u = clip(d, -bound, bound, out=work[rows])
        if beta != 1.0:  # 0 where beta is beyond the dtype's range, as the exact value rounds
            divide_by(xp, u, beta, out=u)
        loss = row_dot(xp, u, d, w, out=per_example[rows])
        if terms is not None and not want_grad:  # u d - u c / 2, over u
            ud = xp.multiply(u, d)
        c = clip(d, -bound, bound, out=d)
        loss -= 0.5 * row_dot(xp, u, c, w)
        if want_grad:
            finish(u, w)
        elif terms is not None:
            u *= c
            u *= 0.5
            xp.subtract(ud, u, out=u)
            put_terms(xp, u, u, w)
    return result(work, want_grad, terms), per_example


def log_cosh_error(
    xp, guesses, targets, *, weights=None, divisor: float = 1, want_grad: bool = True, terms=None
) -> Result:
    """``f = log(cosh(g - t))``, computed stably; gradient w.r.t. the guesses ``tanh(g - t)``.

    ``log(cosh(d)) = log1p(2 sinh(|d|/2)^2)``, exact to full relative
    precision as ``d -> 0`` (unlike ``|d| + log1p(exp(-2|d|)) - log 2``,
    which cancels there); beyond ``|d| = 20`` the function is linear to
    within 5e-18, so the sinh is evaluated at ``min(|d|, 20)`` (no overflow)
    and ``max(|d| - 20, 0)`` is added.
    """
    work = work_buffer(xp, guesses, want_grad, terms)
    per_example = xp.empty(guesses.shape[:1], dtype=guesses.dtype)
    finish, clip = grad_finisher(xp, work.dtype, divisor), clip_function(xp)
    for rows, w, (d, loss) in blocks(xp, work, 2, weights):
        xp.subtract(guesses[rows], targets[rows], out=d)
        grad = xp.tanh(d, out=work[rows]) if want_grad else None
        a = xp.abs(d, out=d)
        clip(a, 0.0, LOGCOSH_LINEAR, out=loss)
        loss *= 0.5
        xp.sinh(loss, out=loss)
        loss *= loss
        loss *= 2.0
        xp.log1p(loss, out=loss)
        a -= LOGCOSH_LINEAR
        loss += clip(a, 0.0, math.inf, out=a)
        row_total(xp, loss, w, out=per_example[rows])
        if grad is not None:
            finish(grad, w)
        elif terms is not None:
            put_terms(xp, work[rows], loss, w)
    return result(work, want_grad, terms), per_example


def stirling_term(xp, targets, out=None, buf=None) -> Array:
    """``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``, else 0 (PyTorch's ``full``); a
    fresh array, or ``out`` (using ``buf``, of the same shape, on the way)."""
    ts = xp.maximum(targets, 1.0, out=buf)
    term = xp.log(ts, out=out)
    term *= ts
    term -= ts
    half_log = xp.multiply(ts, 2.0 * math.pi, out=ts)
    xp.log(half_log, out=half_log)
    half_log *= 0.5
    term += half_log
    term *= xp.greater(targets, 1, out=half_log)
    return term


def poisson_nll(
    xp,
    guesses,
    targets,
    *,
    from_logits: bool = False,
    full: bool = False,
    eps: float = 1e-8,
    weights=None,
    divisor: float = 1,
    want_grad: bool = True,
    terms=None,
) -> Result:
    """Poisson negative log-likelihood of counts ``t``.

    Rates ``g`` (``from_logits=False``): ``f = g - t log(g + eps)``, gradient
    w.r.t. the rates ``1 - t / (g + eps)``. Log-rates ``g``
    (``from_logits=True``): ``f = exp(g) - t g``, gradient w.r.t. the
    log-rates ``exp(g) - t``. ``full`` adds :func:`stirling_term` (no gradient).
    """
    work = work_buffer(xp, guesses, want_grad, terms)
    per_example = xp.empty(guesses.shape[:1], dtype=guesses.dtype)
    finish = grad_finisher(xp, work.dtype, divisor)
    n_slots = 3 if full else (2 if from_logits else 1)
    for rows, w, scratch in blocks(xp, work, n_slots, weights):
        g, t, loss = guesses[rows], targets[rows], scratch[0]
        grad = work[rows]
        if from_logits:
            xp.exp(g, out=loss)
            if want_grad:
                xp.subtract(loss, t, out=grad)
            loss -= xp.multiply(t, g, out=scratch[1])
        else:
            shifted = xp.add(g, eps, out=loss)
            if want_grad:
                xp.divide(t, shifted, out=grad)
                xp.subtract(1.0, grad, out=grad)
            xp.log(shifted, out=shifted)
            shifted *= t  # t log(g + eps)
            loss = xp.subtract(g, shifted, out=loss)
        if full:
            loss += stirling_term(xp, t, out=scratch[1], buf=scratch[2])
        row_total(xp, loss, w, out=per_example[rows])
        if want_grad:
            finish(grad, w)
        elif terms is not None:
            put_terms(xp, grad, loss, w)
    return result(work, want_grad, terms), per_example


def gaussian_nll(
    xp,
    guesses: Tuple[Array, Array],
    targets,
    *,
    full: bool = False,
    eps: float = 1e-6,
    weights=None,
    divisor: float = 1,
    want_grad: bool = True,
    terms=None,
) -> Tuple[Optional[Tuple[Array, Array]], Array]:
    """Gaussian negative log-likelihood of ``t`` given ``guesses = (mean, var)``.

    ``f = 0.5 (log v + (mean - t)^2 / v)`` (+ ``0.5 log 2 pi`` when ``full``),
    ``v = max(var, eps)``; ``var`` has the mean's shape or one column (a
    variance shared by the row). Gradients w.r.t. the mean and the variance:
    ``(mean - t) / v`` and ``0.5 (1 / v - (mean - t)^2 / v^2)`` (summed over
    the columns a variance is shared by), evaluated at the clamped ``v`` and
    passed straight through the clamp (PyTorch clamps under ``no_grad``).
    """
    mean, var = guesses
    shared = var.shape != mean.shape  # one variance per row
    d_mean = work_buffer(xp, mean, want_grad, terms)  # also the scratch for get_loss (or the terms)
    d_var = xp.empty(var.shape, dtype=var.dtype) if want_grad else None
    per_example = xp.empty(mean.shape[:1], dtype=mean.dtype)
    finish = grad_finisher(xp, mean.dtype, divisor)
    for rows, w, scratch in blocks(xp, d_mean, 2 if shared or want_grad else 3, weights):
        if shared:  # v and 1 / v are (rows, 1): small arrays of their own
            r, dv = scratch[:2]
            v = xp.maximum(var[rows], eps)
            inv = xp.divide(1.0, v)
        else:  # v in the variance gradient's block until that is written (or a scratch for get_loss)
            inv, r = scratch[:2]
            dv = d_var[rows] if want_grad else scratch[2]
            v = xp.maximum(var[rows], eps, out=dv)
            xp.divide(1.0, v, out=inv)
        xp.subtract(mean[rows], targets[rows], out=r)
        z = xp.multiply(r, inv, out=d_mean[rows])  # d loss / d mean
        loss = r
        loss *= z
        loss += xp.log(v, out=v)
        loss *= 0.5
        if full:
            loss += HALF_LOG_2PI
        row_total(xp, loss, w, out=per_example[rows])
        if not want_grad:
            if d_mean is terms:  # z is not needed again
                put_terms(xp, d_mean[rows], loss, w)
            continue
        xp.multiply(z, z, out=dv)
        xp.subtract(inv, dv, out=dv)
        dv *= 0.5
        if shared:  # one variance per row: sum its columns
            d_var[rows] = finish(row_total(xp, dv, w)[:, None], None)
        else:
            finish(dv, w)
        finish(z, w)
    grads = (d_mean, d_var) if want_grad else result(d_mean, want_grad, terms)
    return grads, per_example
