"""Maths of the embedding family: cosine distance, cosine embedding, triplet margin, RBF MMD.

Every function takes the array module ``xp`` first (as Thinc's ``ops``), then
the guesses (an ``(N, D)`` array, or a tuple of them), then the targets,
then keyword-only settings, and returns ``(gradient or None, per-example
losses)``. The gradient is the exact derivative of
``sum_i w_i * loss_i / divisor`` with respect to the guesses (a tuple for
tuple guesses); ``weights`` is ``None`` or one weight per row, ``(N,)``;
``divisor`` a number or a 0-d array. Per-example losses are weighted and
not divided.

Magnitudes: norms and dot products are sums of squares, which overflow the
dtype for rows of large values (1e20 in float32) and underflow for tiny
ones. ``largest``, the largest magnitude in the inputs (known to the caller
from its checks), says whether the direct formulas are safe; when it is
``None`` or too large, rows are first divided by a power of two near their
largest magnitude (exact), so that every sum of squares is of order 1, and
the results are put back in the original units. Nothing is checked here.
"""
import functools
import math
from typing import Any, Optional, Sequence, Tuple

import numpy

Array = Any
#: PyTorch's ``cosine_embedding_loss`` adds this to each squared norm.
COSINE_EMBEDDING_EPS = 1e-12


# Magnitudes -----------------------------------------------------------------


def overflow_to_inf(fn):
    """Run ``fn`` without numpy's overflow warnings: in the rescaled formulas a
    product that overflows (the norm of a row near the dtype's maximum) is
    only ever divided by, and inf gives the right limit, 0."""

    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with numpy.errstate(over="ignore"):
            return fn(*args, **kwargs)

    return quiet


def squares_fit(dtype, largest: Optional[float], width: int, *, spread: float = 1.0) -> bool:
    """True when sums of ``width`` squares of values up to ``top = spread * largest``
    stay far inside ``dtype``'s range (a margin of 16 for the sums built on them),
    and ``top^2`` is a normal number with 24 bits to spare (no underflow)."""
    if largest is None:
        return False
    info = numpy.finfo(dtype)
    top = spread * largest
    if top and top * top < float(info.tiny) * 2.0**24:
        return False
    return top * top * max(width, 1) <= float(info.max) / 16.0


def row_scales(xp, floor: float, *rows: Array) -> Array:
    """Per row, the power of two ``m`` with ``m <= v < 2m``, ``v = max(floor, max |x| over the rows)``.

    Dividing a row by ``m`` is exact and leaves its entries in ``(-2, 2)``;
    a row of zeros (with ``floor = 0``) gets ``m = 0.5``.
    """
    top = xp.zeros(rows[0].shape[:1], dtype=rows[0].dtype)
    for x in rows:
        if x.shape[1]:  # (a reduction over no columns has no identity)
            xp.maximum(top, xp.maximum(x.max(axis=1), -x.min(axis=1)), out=top)
    xp.maximum(top, floor, out=top)
    _, exponent = xp.frexp(top)
    return xp.ldexp(xp.ones_like(top), exponent - 1)


def row_norms(xp, x: Array) -> Array:
    """Euclidean norm of each row, as a sum of squares (see :func:`row_scales` for large rows)."""
    return xp.sqrt(xp.einsum("ij,ij->i", x, x))


def weigh(xp, grads, per_example, weights, divisor):
    """Scale each gradient by ``weights / divisor`` (per row) and the losses by ``weights``."""
    if weights is not None:
        per_example = per_example * weights
    if grads is not None:
        if weights is None:
            factor = 1.0 / divisor
        else:
            factor = (weights / divisor).astype(weights.dtype, copy=False)[:, None]
        for g in grads:
            g *= factor
    return grads, per_example


# Cosine distance -------------------------------------------------------------


def nonzero_rows(xp, x: Array) -> Array:
    """Boolean ``(N,)``: the rows of ``x`` with a non-zero entry."""
    return (x != 0).any(axis=1)


@overflow_to_inf
def cosine_distance(
    xp,
    guesses,
    targets,
    *,
    eps: float,
    mask=None,
    largest: Optional[float] = None,
    weights=None,
    divisor: Any = 1,
    want_grad: bool = True,
):
    """``1 - g.t / (max(|g|, eps) max(|t|, eps))`` per row; gradient w.r.t. the guesses ``g``.

    With ``a = max(|g|, eps)``, ``b = max(|t|, eps)`` and ``c`` the cosine,
    ``d/dg = (c g / a [|g| > eps] - t / b) / a``; at ``g = 0`` it is
    ``-t / (b eps)``, large but finite: the exact derivative of the clamped
    cosine. ``eps`` below the dtype's smallest normal number is raised to
    it. ``mask`` (boolean ``(N,)``) keeps rows; the others have loss and
    gradient 0.
    """
    eps = max(eps, float(numpy.finfo(guesses.dtype).tiny))
    width = guesses.shape[1]
    if squares_fit(guesses.dtype, largest, width) and eps >= math.sqrt(float(numpy.finfo(guesses.dtype).tiny)):
        g, t, m_g, m_t = guesses, targets, 1.0, 1.0
    else:  # rows in units of their own scale: eps becomes eps / m per row
        m_g, m_t = row_scales(xp, eps, guesses), row_scales(xp, eps, targets)
        g, t = guesses / m_g[:, None], targets / m_t[:, None]
    g_norm, t_norm = row_norms(xp, g), row_norms(xp, t)
    a, b = xp.maximum(g_norm, eps / m_g), xp.maximum(t_norm, eps / m_t)
    cos = xp.einsum("ij,ij->i", g, t) / (a * b)
    grads = None
    if want_grad:
        clamped_norm = a * m_g  # a in the guesses' units
        free = g_norm > eps / m_g  # the norm is not clamped
        grad = (((cos / a) * free) / clamped_norm)[:, None] * g
        grad -= (1.0 / (b * clamped_norm))[:, None] * t
        grads = (grad,)
    per_example = 1.0 - cos
    if mask is not None:
        keep = mask.astype(per_example.dtype)
        weights = keep if weights is None else weights * keep
    grads, per_example = weigh(xp, grads, per_example, weights, divisor)
    return (grads[0] if grads else None), per_example


# Cosine embedding ------------------------------------------------------------


@overflow_to_inf
def cosine_embedding(
    xp,
    guesses: Tuple[Array, Array],
    targets,
    *,
    margin: float,
    largest: Optional[float] = None,
    weights=None,
    divisor: Any = 1,
    want_grad: bool = True,
):
    """PyTorch's cosine embedding loss per pair: ``1 - cos`` if ``y = 1``, ``max(0, cos - margin)`` if ``y = -1``.

    ``guesses = (x1, x2)``, ``targets`` the labels ``y``;
    ``cos = x1.x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))``. Gradients
    w.r.t. ``x1`` and ``x2``: ``dL/dcos (x2 / root - cos x1 / s1)`` and its
    mirror, ``s = |x|^2 + 1e-12``, ``root = sqrt(s1 s2)``.
    """
    x1, x2 = guesses
    if squares_fit(x1.dtype, largest, x1.shape[1]):
        m1 = m2 = 1.0
    else:  # rows in units of their own scale (at least sqrt(1e-12))
        floor = math.sqrt(COSINE_EMBEDDING_EPS)
        m1, m2 = row_scales(xp, floor, x1), row_scales(xp, floor, x2)
        x1, x2 = x1 / m1[:, None], x2 / m2[:, None]
    s1 = xp.einsum("ij,ij->i", x1, x1) + (COSINE_EMBEDDING_EPS / m1) / m1
    s2 = xp.einsum("ij,ij->i", x2, x2) + (COSINE_EMBEDDING_EPS / m2) / m2
    root = xp.sqrt(s1) * xp.sqrt(s2)  # not sqrt(s1 s2): the product overflows first
    cos = xp.einsum("ij,ij->i", x1, x2) / root
    positive = targets > 0
    per_example = xp.where(positive, 1.0 - cos, xp.maximum(cos - margin, 0.0))
    grads = None
    if want_grad:
        # dL/dcos: -1 for similar pairs, 1 for dissimilar pairs beyond the margin.
        d_cos = xp.where(positive, -1.0, (cos > margin).astype(cos.dtype))
        g1 = (d_cos / (m1 * root))[:, None] * x2 - (d_cos * cos / (m1 * s1))[:, None] * x1
        g2 = (d_cos / (m2 * root))[:, None] * x1 - (d_cos * cos / (m2 * s2))[:, None] * x2
        grads = (g1, g2)
    return weigh(xp, grads, per_example, weights, divisor)


# Triplet margin --------------------------------------------------------------


def p_norm(xp, u: Array, p: float) -> Array:
    """``||u||_p`` per row (rescaled by the row's max for p other than 1 and 2)."""
    if p == 2.0:
        return row_norms(xp, u)
    if p == 1.0:
        return xp.abs(u).sum(axis=1)
    m = xp.abs(u).max(axis=1)
    safe = xp.where(m > 0, m, 1.0)
    return m * ((xp.abs(u) / safe[:, None]) ** p).sum(axis=1) ** (1.0 / p)


def p_norm_grad(xp, u: Array, norm: Array, p: float) -> Array:
    """``d ||u||_p / du`` per row; 0 where ``u = 0`` (as PyTorch's norm)."""
    if p == 1.0:
        return xp.sign(u)
    safe = xp.where(norm > 0, norm, 1.0)[:, None]
    if p == 2.0:
        return u / safe
    return xp.sign(u) * (xp.abs(u) / safe) ** (p - 1.0)


def triplet_distance_bound(width: int, largest: float, *, p: float, eps: float) -> float:
    """An upper bound of ``||x - y + eps||_p`` for entries of magnitude up to ``largest``."""
    return float(width) ** (1.0 / p) * (2.0 * largest + eps) if width else 0.0


@overflow_to_inf
def triplet_margin(
    xp,
    guesses: Tuple[Array, Array, Array],
    targets=None,
    *,
    margin: float,
    p: float,
    eps: float,
    swap: bool,
    squared: bool,
    largest: Optional[float] = None,
    weights=None,
    divisor: Any = 1,
    want_grad: bool = True,
):
    """``max(0, margin + f(d(a, pos)) - f(d(a, neg)))`` per triplet, ``d(x, y) = ||x - y + eps||_p``.

    ``guesses = (a, pos, neg)``; there are no targets. ``f`` is the
    identity, or the square when ``squared``; with ``swap`` the negative
    distance is ``min(d(a, neg), d(pos, neg))``. Gradients w.r.t.
    ``(a, pos, neg)``: ``f'(d)`` times the norms' gradients (0 for a zero
    difference, as PyTorch's norm). The caller makes sure that the
    distances (squared, when ``squared``) fit the dtype: see
    :func:`triplet_distance_bound`.
    """
    a, pos, neg = guesses
    scale, shift = None, eps
    if largest is None or not squares_fit(a.dtype, 2.0 * largest + eps, a.shape[1]):
        # rows in units of a common power of two (at least eps): differences of order 1
        scale = row_scales(xp, eps, a, pos, neg)
        a, pos, neg = (x / scale[:, None] for x in (a, pos, neg))
        shift = (eps / scale)[:, None]
    u, v = a - pos + shift, a - neg + shift
    du, dv = p_norm(xp, u, p), p_norm(xp, v, p)  # in units of the scale
    d_neg = dv
    if swap:
        w = pos - neg + shift
        dw = p_norm(xp, w, p)
        use_v = dv <= dw
        d_neg = xp.where(use_v, dv, dw)
    # The distances in the inputs' units.
    dist_pos, dist_neg = (du, d_neg) if scale is None else (du * scale, d_neg * scale)
    f_pos, f_neg = (dist_pos * dist_pos, dist_neg * dist_neg) if squared else (dist_pos, dist_neg)
    z = margin + f_pos - f_neg
    per_example = xp.maximum(z, 0.0)
    grads = None
    if want_grad:
        active = (z > 0).astype(z.dtype)
        c_pos = active * (2.0 * dist_pos if squared else 1.0)
        c_neg = active * (2.0 * dist_neg if squared else 1.0)
        gu = c_pos[:, None] * p_norm_grad(xp, u, du, p)
        if swap:
            gv = (c_neg * use_v)[:, None] * p_norm_grad(xp, v, dv, p)
            gw = (c_neg * ~use_v)[:, None] * p_norm_grad(xp, w, dw, p)
            grads = (gu - gv, -gu - gw, gv + gw)
        else:
            gv = c_neg[:, None] * p_norm_grad(xp, v, dv, p)
            grads = (gu - gv, -gu, gv)
    return weigh(xp, grads, per_example, weights, divisor)


# Maximum mean discrepancy ----------------------------------------------------


def squared_distances(xp, x: Array, y: Array) -> Array:
    """``||x_i - y_j||^2`` for every pair of rows, ``(N, M)``, clipped at 0.

    When ``y is x`` the diagonal is exactly 0.
    """
    xx = xp.einsum("ij,ij->i", x, x)
    yy = xx if y is x else xp.einsum("ij,ij->i", y, y)
    d = xx[:, None] + yy[None, :] - 2.0 * (x @ y.T)
    xp.maximum(d, 0.0, out=d)
    if x is y:  # a point's distance to itself is 0, not the expansion's rounding error
        d.reshape(-1)[:: d.shape[0] + 1] = 0.0
    return d


def rbf_kernels(xp, sq: Array, bandwidths: Sequence[float], *, scale: float = 1.0) -> Tuple[Array, Array]:
    """``K = sum_s exp(-sq scale^2 / b_s)`` and ``dK/d(sq scale^2) = -sum_s exp(...) / b_s``.

    ``sq`` holds squared distances in units of ``scale``.
    """
    top = float(numpy.finfo(sq.dtype).max)
    k = xp.zeros_like(sq)
    dk = xp.zeros_like(sq)
    for b in bandwidths:
        e = xp.exp(sq * -min(scale * scale / b, top))
        k += e
        dk -= e * (1.0 / b)
    return k, dk


@overflow_to_inf
def rbf_mmd(
    xp,
    guesses,
    targets,
    *,
    bandwidths: Sequence[float],
    largest: Optional[float] = None,
    weights=None,
    divisor: Any = 1,
    want_grad: bool = True,
):
    """Each guesses-row's share of the biased MMD^2 (times N); gradient w.r.t. the guesses.

    With the RBF kernels ``k(x, y) = sum_s exp(-||x - y||^2 / b_s)``,
    ``loss_i = mean_j k(x_i, x_j) - 2 mean_a k(x_i, y_a) + mean_ab k(y_a, y_b)``
    over the guesses rows ``x`` (N) and the target rows ``y`` (M), whose mean
    over i is the biased (V-statistic) estimate of MMD^2. With weights
    ``w``, the loss ``sum_i w_i loss_i`` has gradient
    ``dL/dx_k = 2 sum_j (w_k + w_j) / N dK_kj (x_k - x_j) - 4 w_k / M sum_a dK_ka (x_k - y_a)``,
    ``dK = dk/d||.||^2``. Distances are taken after centring on a sample's
    mean (shifts keep ``|x|^2 + |y|^2 - 2 x.y`` from cancelling far from the
    origin); for large magnitudes, in float64 and in units of a power of two.
    """
    dtype = guesses.dtype
    n, m = guesses.shape[0], targets.shape[0]
    if squares_fit(dtype, largest, guesses.shape[1], spread=4.0):
        x, y, scale = guesses, targets, 1.0
    else:
        _, exponent = math.frexp(largest or 1.0)
        scale = math.ldexp(1.0, exponent - 1)
        x, y = guesses.astype("float64") / scale, targets.astype("float64") / scale
    # Distances do not change under a shift: each block is centred on a mean of
    # its own rows (x's for x-x, y's for x-y and y-y), so that a sample far from
    # the origin or from the other sample keeps its own distances' digits.
    x_own = x - x.mean(axis=0)
    centre = y.mean(axis=0)
    x, y = x - centre, y - centre
    kxx, dxx = rbf_kernels(xp, squared_distances(xp, x_own, x_own), bandwidths, scale=scale)
    kxy, dxy = rbf_kernels(xp, squared_distances(xp, x, y), bandwidths, scale=scale)
    kyy, _ = rbf_kernels(xp, squared_distances(xp, y, y), bandwidths, scale=scale)
    per_example = kxx.mean(axis=1) - 2.0 * kxy.mean(axis=1) + kyy.mean()
    grad = None
    if want_grad:
        dxx.reshape(-1)[:: n + 1] = 0.0  # x_k - x_k = 0: the diagonal adds only rounding
        w = None if weights is None else weights.astype(x.dtype, copy=False)
        if w is None:
            a = dxx * (4.0 / n)
            b = dxy * (4.0 / m)
        else:
            a = dxx * ((w[:, None] + w[None, :]) * (2.0 / n))
            b = dxy * (w[:, None] * (4.0 / m))
        # sum_j A_kj (x_k - x_j) = rowsum(A)_k x_k - (A @ x)_k, in units of scale
        grad = a.sum(axis=1)[:, None] * x_own - a @ x_own
        grad -= b.sum(axis=1)[:, None] * x - b @ y
        if scale != 1.0:
            grad *= scale
        grad /= divisor
        grad = grad.astype(dtype, copy=False)
    per_example = per_example.astype(dtype, copy=False)
    if weights is not None:
        per_example = per_example * weights
    return grad, per_example
