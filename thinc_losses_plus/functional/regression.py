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
  ``(N, 1)``, or ``(N,)`` for 1-d guesses).

Nothing is checked here: a non-finite input or an overflow gives a
non-finite loss, which the caller's checks diagnose. Inputs are never
written; each function allocates the gradient once and writes the loss
through buffers of its own.
"""
import math
from typing import Any, Optional, Tuple

import numpy

from .._core import row_sum, scale_grad

Array = Any
Result = Tuple[Optional[Array], Array]

#: Beyond this |d|, log(cosh(d)) = log(cosh(20)) + (|d| - 20) to within 5e-18.
LOGCOSH_LINEAR = 20.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def row_dot(xp, a: Array, b: Array, weights=None) -> Array:
    """Per-example ``sum_c a_c * b_c * w_c``, as :func:`thinc_losses_plus._core.row_sum`."""
    if a.ndim == 1:
        out = a * b
        return out if weights is None else out * weights.reshape(out.shape)
    if weights is None:
        return xp.einsum("ij,ij->i", a, b)
    if weights.shape == a.shape:
        return xp.einsum("ij,ij,ij->i", a, b, weights)
    return xp.einsum("ij,ij->i", a, b) * weights.reshape(-1)


#: Where a loss needs a scratch array beside the gradient, arrays of more than
#: SMALL_ELEMENTS are processed in row blocks of about BLOCK_ELEMENTS: the
#: scratch stays in cache and the peak memory is the gradient plus one block
#: (1.00x the gradient at 32768x1000). Smaller arrays take one block: below
#: that size the per-block Python calls cost more than the memory is worth.
BLOCK_ELEMENTS = 1 << 16
SMALL_ELEMENTS = 1 << 18


def block_rows(d: Array) -> int:
    """The rows of one block of ``d`` (all of them for a small or 1-d ``d``)."""
    if d.ndim != 2 or d.size <= SMALL_ELEMENTS:
        return max(1, d.shape[0])
    return max(1, BLOCK_ELEMENTS // max(d.shape[1], 1))


def row_blocks(d: Array, weights):
    """``(rows, row weights)`` blocks of ``d``; one block of everything for weights that are
    not one entry or row per row of ``d``."""
    n = d.shape[0]
    if d.ndim != 2 or (weights is not None and (weights.ndim == 0 or weights.shape[0] != n)):
        yield slice(None), weights
        return
    step = block_rows(d)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        yield rows, None if weights is None else weights[rows]


def scratch_for(xp, d: Array):
    """One block's worth of scratch (:func:`block_view` fits it to a block)."""
    if d.ndim != 2:
        return xp.empty(d.shape, dtype=d.dtype)
    return xp.empty((min(block_rows(d), d.shape[0]),) + d.shape[1:], dtype=d.dtype)


def block_view(scratch: Array, block: Array) -> Array:
    return scratch[: block.shape[0]] if block.ndim else scratch


def half_squared_error(xp, guesses, targets, *, weights=None, divisor: float = 1, want_grad: bool = True) -> Result:
    """``f = 0.5 (g - t)^2``; gradient w.r.t. the guesses ``g - t``."""
    d = guesses - targets
    per_example = 0.5 * row_dot(xp, d, d, weights)
    grad = scale_grad(d, weights, divisor) if want_grad else None
    return grad, per_example


def absolute_error(xp, guesses, targets, *, weights=None, divisor: float = 1, want_grad: bool = True) -> Result:
    """``f = |g - t|``; subgradient w.r.t. the guesses ``sign(g - t)`` (0 where ``g = t``).

    The loss is ``sign(d) . d`` (exact: ``sign`` is -1, 0 or 1), so the
    gradient's buffer is the only array of the guesses' size.
    """
    d = guesses - targets
    if not want_grad:
        return None, row_sum(xp.abs(d, out=d), weights)
    # Block by block: sign(d) into a scratch, the row losses, then sign(d) over d.
    per_example = xp.empty(d.shape[:1], dtype=d.dtype)
    scratch = scratch_for(xp, d)
    for rows, w in row_blocks(d, weights):
        block = d[rows]
        s = xp.sign(block, out=block_view(scratch, block))
        per_example[rows] = row_dot(xp, s, block, w)
        block[...] = s
    return scale_grad(d, weights, divisor), per_example


def huber_error(
    xp, guesses, targets, *, delta: float, weights=None, divisor: float = 1, want_grad: bool = True
) -> Result:
    """Huber's ``f = 0.5 d^2`` if ``|d| < delta`` else ``delta (|d| - delta / 2)``, ``d = g - t``.

    Gradient w.r.t. the guesses ``c = clip(d, -delta, delta)``. Without a
    branch, ``f = c d - c^2 / 2`` (both terms are non-negative multiples of
    the same sign and ``c d >= c^2``, so nothing cancels badly).
    """
    d = guesses - targets
    # A delta beyond the dtype's range clips nothing: cap it (exact).
    delta = min(delta, float(numpy.finfo(d.dtype).max))
    # Block by block: c into a scratch, the row losses, then c over d (the gradient).
    per_example = xp.empty(d.shape[:1], dtype=d.dtype)
    scratch = scratch_for(xp, d)
    for rows, w in row_blocks(d, weights):
        block = d[rows]
        c = xp.clip(block, -delta, delta, out=block_view(scratch, block))
        loss = row_dot(xp, c, block, w)
        loss -= 0.5 * row_dot(xp, c, c, w)
        per_example[rows] = loss
        block[...] = c
    grad = scale_grad(d, weights, divisor) if want_grad else None
    return grad, per_example


def smooth_l1_error(
    xp, guesses, targets, *, beta: float, weights=None, divisor: float = 1, want_grad: bool = True
) -> Result:
    """Smooth L1 ``f = 0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - beta / 2``, ``d = g - t``.

    Gradient w.r.t. the guesses ``u = clip(d, -beta, beta) / beta``; the loss
    is ``u d - u c / 2`` with ``c = clip(d, -beta, beta)``. ``beta = 0`` (or
    a beta that is 0 in the dtype) is the absolute error.
    """
    if guesses.dtype.type(beta) == 0:
        return absolute_error(xp, guesses, targets, weights=weights, divisor=divisor, want_grad=want_grad)
    d = guesses - targets
    bound = min(beta, float(numpy.finfo(d.dtype).max))
    # Block by block: c and u into two scratches, the row losses, then u over d (the gradient).
    per_example = xp.empty(d.shape[:1], dtype=d.dtype)
    scratch_c, scratch_u = scratch_for(xp, d), scratch_for(xp, d)
    for rows, w in row_blocks(d, weights):
        block = d[rows]
        c = xp.clip(block, -bound, bound, out=block_view(scratch_c, block))
        # 0 where beta is beyond the dtype's range, as the exact value rounds
        u = xp.divide(c, beta, out=block_view(scratch_u, block))
        loss = row_dot(xp, u, block, w)
        loss -= 0.5 * row_dot(xp, u, c, w)
        per_example[rows] = loss
        block[...] = u
    grad = scale_grad(d, weights, divisor) if want_grad else None
    return grad, per_example


def log_cosh_error(xp, guesses, targets, *, weights=None, divisor: float = 1, want_grad: bool = True) -> Result:
    """``f = log(cosh(g - t))``, computed stably; gradient w.r.t. the guesses ``tanh(g - t)``.

    ``log(cosh(d)) = log1p(2 sinh(|d|/2)^2)``, exact to full relative
    precision as ``d -> 0`` (unlike ``|d| + log1p(exp(-2|d|)) - log 2``,
    which cancels there); beyond ``|d| = 20`` the function is linear to
    within 5e-18, so the sinh is evaluated at ``min(|d|, 20)`` (no overflow)
    and ``max(|d| - 20, 0)`` is added.
    """
    d = guesses - targets
    grad = xp.tanh(d) if want_grad else None
    a = xp.abs(d, out=d)
    loss = xp.clip(a, 0.0, LOGCOSH_LINEAR)
    loss *= 0.5
    xp.sinh(loss, out=loss)
    loss *= loss
    loss *= 2.0
    xp.log1p(loss, out=loss)
    a -= LOGCOSH_LINEAR
    loss += xp.clip(a, 0.0, math.inf, out=a)
    if grad is not None:
        grad = scale_grad(grad, weights, divisor)
    return grad, row_sum(loss, weights)


def stirling_term(xp, targets) -> Array:
    """``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``, else 0 (PyTorch's ``full``)."""
    ts = xp.maximum(targets, 1.0)
    term = ts * xp.log(ts) - ts + 0.5 * xp.log((2.0 * math.pi) * ts)
    term *= targets > 1
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
) -> Result:
    """Poisson negative log-likelihood of counts ``t``.

    Rates ``g`` (``from_logits=False``): ``f = g - t log(g + eps)``, gradient
    w.r.t. the rates ``1 - t / (g + eps)``. Log-rates ``g``
    (``from_logits=True``): ``f = exp(g) - t g``, gradient w.r.t. the
    log-rates ``exp(g) - t``. ``full`` adds :func:`stirling_term` (no gradient).
    """
    grad = None
    if from_logits:
        loss = xp.exp(guesses)
        if want_grad:
            grad = loss - targets
        loss -= targets * guesses
    else:
        shifted = guesses + eps
        if want_grad:
            grad = targets / shifted
            grad = xp.subtract(1.0, grad, out=grad)
        loss = guesses - targets * xp.log(shifted, out=shifted)
    if full:
        loss += stirling_term(xp, targets)
    if grad is not None:
        grad = scale_grad(grad, weights, divisor)
    return grad, row_sum(loss, weights)


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
    v = xp.maximum(var, eps)
    inv = 1.0 / v
    r = mean - targets
    z = r * inv  # d loss / d mean
    loss = r
    loss *= z
    loss += xp.log(v)
    loss *= 0.5
    if full:
        loss += HALF_LOG_2PI
    grads = None
    if want_grad:
        d_var = z * z
        d_var = xp.subtract(inv, d_var, out=d_var)
        d_var *= 0.5
        if d_var.shape != var.shape:  # one variance per row: sum its columns
            d_var = scale_grad(row_sum(d_var, weights)[:, None], None, divisor)
        else:
            d_var = scale_grad(d_var, weights, divisor)
        grads = (scale_grad(z, weights, divisor), d_var)
    return grads, row_sum(loss, weights)
