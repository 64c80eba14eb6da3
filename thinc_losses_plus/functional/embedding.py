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

Memory (SPEC section 8): nothing of the inputs' size is allocated beside the
gradients. Norms and dot products are per-row einsums; the gradients are
written by row blocks, a block's temporaries in rows of a gradient still to
be written (:func:`~thinc_losses_plus.functional.blocks.scratch_blocks`) or
in a pool of about 5% of one (:func:`block_pool`), or made in the gradients'
own buffers and turned into them in place; each call's peak is 1.03-1.09x
the gradients' bytes at the benchmark sizes, with the bits of the
whole-array formulas. The MMD's kernel matrices are made a few rows at a
time (:func:`rbf_mmd`).
"""
import functools
import math
from typing import Any, Optional, Sequence, Tuple

import numpy

from .blocks import block_rows, scratch_blocks, small_ufunc_buffers

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


def grad_factor(xp, weights, divisor):
    """What :func:`weigh` multiplies a gradient by: ``1 / divisor``, or ``weights / divisor`` per row ``(N, 1)``."""
    if weights is None:
        return 1.0 / divisor
    return (weights / divisor).astype(weights.dtype, copy=False)[:, None]


def factor_rows(factor, rows):
    """The rows ``rows`` of a :func:`grad_factor` (a number is every row's)."""
    return factor[rows] if getattr(factor, "ndim", 0) == 2 else factor


def combine_rows(xp, out, c1, x1, c2, x2, tmp, factor):
    """``(c1[:, None] * x1 - c2[:, None] * x2) * factor`` into ``out`` (rows of a gradient), with ``tmp``
    (``out``'s shape) for the second product: the bits of the whole-array expression."""
    xp.multiply(c1[:, None], x1, out=out)
    out -= xp.multiply(c2[:, None], x2, out=tmp)
    out *= factor
    return out


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

    Memory: norms and dot products are per-row einsums (nothing of the
    inputs' size); the gradient is written by row blocks
    (:func:`~thinc_losses_plus.functional.blocks.scratch_blocks`), the
    product ``t / b`` of a block in rows of the gradient still to be
    written, so a call allocates the gradient, ``(N,)`` arrays and about 5%
    of the gradient (1.09x at 4096x300 float32, the per-row arrays included). Rescaled rows are divided by their
    scale block by block too (the guesses' into the gradient's buffer). The
    bits are those of the whole-array formulas.
    """
    eps = max(eps, float(numpy.finfo(guesses.dtype).tiny))
    n, width = guesses.shape
    einsum = xp.einsum
    direct = squares_fit(guesses.dtype, largest, width) and eps >= math.sqrt(float(numpy.finfo(guesses.dtype).tiny))
    grad = xp.empty(guesses.shape, dtype=guesses.dtype) if want_grad or not direct else None
    if direct:
        g, m_g, m_t = guesses, 1.0, 1.0
        g_norm2, t_norm2, dot = einsum("ij,ij->i", g, g), einsum("ij,ij->i", targets, targets), einsum("ij,ij->i", g, targets)
    else:  # rows in units of their own scale: eps becomes eps / m per row
        m_g, m_t = row_scales(xp, eps, guesses), row_scales(xp, eps, targets)
        g = xp.divide(guesses, m_g[:, None], out=grad)  # the scaled guesses, in the gradient's buffer
        g_norm2, t_norm2, dot = (xp.empty((n,), dtype=guesses.dtype) for _ in range(3))
        tmp = block_pool(xp, guesses.shape, guesses.dtype)[0]
        for rows in row_blocks(n, tmp.shape[0]):
            t = xp.divide(targets[rows], m_t[rows, None], out=tmp[: rows.stop - rows.start])
            t_norm2[rows] = einsum("ij,ij->i", t, t)
            dot[rows] = einsum("ij,ij->i", g[rows], t)
        g_norm2 = einsum("ij,ij->i", g, g)
    g_norm, t_norm = xp.sqrt(g_norm2), xp.sqrt(t_norm2)
    a, b = xp.maximum(g_norm, eps / m_g), xp.maximum(t_norm, eps / m_t)
    cos = dot / (a * b)
    per_example = 1.0 - cos
    if mask is not None:
        keep = mask.astype(per_example.dtype)
        weights = keep if weights is None else weights * keep
    if want_grad:
        clamped_norm = a * m_g  # a in the guesses' units
        free = g_norm > eps / m_g  # the norm is not clamped
        c_g = (cos / a) * free / clamped_norm
        c_t = 1.0 / (b * clamped_norm)
        factor = grad_factor(xp, weights, divisor)
        if direct:
            for rows, (tmp,) in scratch_blocks(xp, grad, 1):
                combine_rows(xp, grad[rows], c_g[rows], g[rows], c_t[rows], targets[rows], tmp, factor_rows(factor, rows))
        else:  # grad holds the scaled guesses: c_g g - c_t t / m_t, the targets scaled block by block
            for rows in row_blocks(n, tmp.shape[0]):
                block, t = grad[rows], tmp[: rows.stop - rows.start]
                block *= c_g[rows, None]
                xp.divide(targets[rows], m_t[rows, None], out=t)
                block -= xp.multiply(c_t[rows, None], t, out=t)
                block *= factor_rows(factor, rows)
    if weights is not None:
        per_example = per_example * weights
    return (grad if want_grad else None), per_example


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

    Memory: per-row einsums, then the two gradients by row blocks, each
    block's second product in rows of ``dL/dx2`` still to be written
    (:func:`~thinc_losses_plus.functional.blocks.scratch_blocks`): a call
    allocates the gradients, ``(N,)`` arrays and about 3% of the gradients
    (rescaled rows: their scaled copies live in the gradients' buffers,
    with a pool of about 10% of one). The bits are those of the whole-array
    formulas.
    """
    x1, x2 = guesses
    n = x1.shape[0]
    einsum = xp.einsum
    direct = squares_fit(x1.dtype, largest, x1.shape[1])
    if want_grad or not direct:
        g1, g2 = xp.empty(x1.shape, dtype=x1.dtype), xp.empty(x1.shape, dtype=x1.dtype)
    if direct:
        m1 = m2 = 1.0
    else:  # rows in units of their own scale (at least sqrt(1e-12)), in the gradients' buffers
        floor = math.sqrt(COSINE_EMBEDDING_EPS)
        m1, m2 = row_scales(xp, floor, x1), row_scales(xp, floor, x2)
        x1, x2 = xp.divide(x1, m1[:, None], out=g1), xp.divide(x2, m2[:, None], out=g2)
    s1 = einsum("ij,ij->i", x1, x1) + (COSINE_EMBEDDING_EPS / m1) / m1
    s2 = einsum("ij,ij->i", x2, x2) + (COSINE_EMBEDDING_EPS / m2) / m2
    root = xp.sqrt(s1) * xp.sqrt(s2)  # not sqrt(s1 s2): the product overflows first
    cos = einsum("ij,ij->i", x1, x2) / root
    positive = targets > 0
    per_example = xp.where(positive, 1.0 - cos, xp.maximum(cos - margin, 0.0))
    grads = None
    if want_grad:
        # dL/dcos: -1 for similar pairs, 1 for dissimilar pairs beyond the margin.
        d_cos = xp.where(positive, -1.0, (cos > margin).astype(cos.dtype))
        # g1 = c12 x2 - c11 x1, g2 = c21 x1 - c22 x2
        c12, c11 = d_cos / (m1 * root), d_cos * cos / (m1 * s1)
        c21, c22 = d_cos / (m2 * root), d_cos * cos / (m2 * s2)
        factor = grad_factor(xp, weights, divisor)
        if direct:
            for rows, (tmp,) in scratch_blocks(xp, g2, 1):
                f = factor_rows(factor, rows)
                combine_rows(xp, g1[rows], c12[rows], x2[rows], c11[rows], x1[rows], tmp, f)
                combine_rows(xp, g2[rows], c21[rows], x1[rows], c22[rows], x2[rows], tmp, f)
        else:  # g1, g2 hold the scaled rows x1, x2
            first, second = block_pool(xp, g1.shape, g1.dtype, 2)
            for rows in row_blocks(n, first.shape[0]):
                f, k = factor_rows(factor, rows), rows.stop - rows.start
                a1, a2 = first[:k], second[:k]
                combine_rows(xp, a1, c12[rows], x2[rows], c11[rows], x1[rows], a2, f)  # g1's rows, in a1
                xp.multiply(c21[rows, None], x1[rows], out=a2)
                x2[rows] *= c22[rows, None]  # x2's rows are no longer needed: c22 x2 in g2's rows
                xp.subtract(a2, x2[rows], out=g2[rows])
                g2[rows] *= f
                g1[rows] = a1
        grads = (g1, g2)
    if weights is not None:
        per_example = per_example * weights
    return grads, per_example


# Triplet margin --------------------------------------------------------------


def row_blocks(n: int, rows: int):
    """Slices of ``rows`` consecutive rows (the last one shorter) covering ``n`` rows."""
    rows = max(1, int(rows))
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


def block_pool(xp, shape, dtype, n_buffers: int = 1):
    """``n_buffers`` scratch arrays of :func:`~thinc_losses_plus.functional.blocks.block_rows` rows
    of an ``(N, D)`` array: about 5% of it in all (a few rows of a small one)."""
    rows = block_rows(shape, n_buffers)
    return [xp.empty((rows,) + tuple(shape[1:]), dtype=dtype) for _ in range(n_buffers)]


def p_norm(xp, u: Array, p: float, pool=None) -> Array:
    """``||u||_p`` per row (rescaled by the row's max for p other than 1 and 2).

    The elementwise temporaries of p other than 2 are of ``u``'s size, or with
    ``pool`` (a scratch array of ``u``'s width) blocks of its rows: row
    reductions of the same values, so the same bits.
    """
    if p == 2.0:
        return row_norms(xp, u)
    if pool is None:
        return _p_norm_rows(xp, u, p, xp.abs(u))
    norm = xp.empty(u.shape[:1], dtype=u.dtype)
    for rows in row_blocks(u.shape[0], pool.shape[0]):
        block = u[rows]
        norm[rows] = _p_norm_rows(xp, block, p, xp.abs(block, out=pool[: block.shape[0]]))
    return norm


def _p_norm_rows(xp, u: Array, p: float, magnitude: Array) -> Array:
    """:func:`p_norm` of rows ``u``, given ``magnitude = |u|`` (a temporary, overwritten)."""
    if p == 1.0:
        return magnitude.sum(axis=1)
    m = magnitude.max(axis=1)
    safe = xp.where(m > 0, m, 1.0)
    magnitude /= safe[:, None]
    magnitude **= p
    return m * magnitude.sum(axis=1) ** (1.0 / p)


def p_norm_grad(xp, u: Array, norm: Array, p: float) -> Array:
    """``d ||u||_p / du`` per row; 0 where ``u = 0`` (as PyTorch's norm)."""
    if p == 1.0:
        return xp.sign(u)
    safe = xp.where(norm > 0, norm, 1.0)[:, None]
    if p == 2.0:
        return u / safe
    return xp.sign(u) * (xp.abs(u) / safe) ** (p - 1.0)


def p_norm_grad_inplace(xp, u: Array, norm: Array, p: float, coefficient: Array, pool: Array) -> Array:
    """``coefficient[:, None] * p_norm_grad(u, norm, p)`` written over ``u`` (the same values).

    For p other than 2 the signs (and powers) of a block of rows are made in
    ``pool`` (``u``'s width): numpy's ``sign`` is several times slower in place.
    ``sign(u) * power`` is ``copysign(power, u)`` (``power`` is 0 where ``u`` is).
    """
    if p == 2.0:
        u /= xp.where(norm > 0, norm, 1.0)[:, None]
        u *= coefficient[:, None]
        return u
    safe = None if p == 1.0 else xp.where(norm > 0, norm, 1.0)[:, None]
    for rows in row_blocks(u.shape[0], pool.shape[0] if pool is not None else u.shape[0]):
        block, c = u[rows], coefficient[rows, None]
        scratch = pool[: block.shape[0]]
        if p == 1.0:
            xp.multiply(xp.sign(block, out=scratch), c, out=block)
        else:  # sign(u) * (|u| / safe) ** (p - 1)
            power = xp.abs(block, out=scratch)
            power /= safe[rows]
            power **= p - 1.0
            xp.copysign(power, block, out=block)
            block *= c
    return u


def triplet_distance_bound(width: int, largest: float, *, p: float, eps: float) -> float:
    """An upper bound of ``||x - y + eps||_p`` for entries of magnitude up to ``largest``."""
    return float(width) ** (1.0 / p) * (2.0 * largest + eps) if width else 0.0


def _difference(xp, x, y, shift, scale, out, spare=None, pool=None):
    """``x / scale - y / scale + shift`` into ``out`` (``x - y + shift`` when ``scale`` is None).

    The scaled quotient of ``y`` needs a temporary: ``spare`` (an array of ``out``'s
    shape whose contents do not matter yet) or, block by block, ``pool``.
    """
    if scale is None:
        xp.subtract(x, y, out=out)
    else:
        s = scale[:, None]
        xp.divide(x, s, out=out)
        if spare is not None:
            out -= xp.divide(y, s, out=spare)
        else:
            for rows in row_blocks(out.shape[0], pool.shape[0]):
                out[rows] -= xp.divide(y[rows], s[rows], out=pool[: rows.stop - rows.start])
    out += shift
    return out


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

    Memory: the differences ``u = a - pos + eps``, ``v = a - neg + eps`` (and
    ``w = pos - neg + eps``) are made in the three gradients' own buffers and
    turned into the gradients in place; what else a call allocates is
    ``(N,)`` arrays and, for ``p`` other than 2, for ``swap`` and for rows
    that must be rescaled, a scratch pool of about 5% of one gradient
    (:func:`block_pool`): the peak is 1.03x the gradients' bytes at 4096x128
    (1.05x with ``p = 1`` and ``swap``).
    The bits are those of the whole-array formulas.
    """
    a, pos, neg = guesses
    n = a.shape[0]
    scale, shift = None, eps
    if largest is None or not squares_fit(a.dtype, 2.0 * largest + eps, a.shape[1]):
        # rows in units of a common power of two (at least eps): differences of order 1
        scale = row_scales(xp, eps, a, pos, neg)
        shift = (eps / scale)[:, None]
    need_pool = swap or p != 2.0 or scale is not None
    pool = block_pool(xp, a.shape, a.dtype)[0] if need_pool else None
    # u in gp, v in gn, w in ga: the gradients' buffers (made even without want_grad).
    gp, gn = xp.empty(a.shape, dtype=a.dtype), xp.empty(a.shape, dtype=a.dtype)
    ga = xp.empty(a.shape, dtype=a.dtype) if (want_grad or swap or scale is not None) else None
    u = _difference(xp, a, pos, shift, scale, gp, spare=gn)
    v = _difference(xp, a, neg, shift, scale, gn, spare=ga)
    # |u| and |v| (p other than 2) in ga, free until w is made (else in the pool).
    norm_pool = pool if ga is None else ga
    du, dv = p_norm(xp, u, p, pool=norm_pool), p_norm(xp, v, p, pool=norm_pool)  # in units of the scale
    d_neg = dv
    if swap:
        w = _difference(xp, pos, neg, shift, scale, ga, pool=pool)
        dw = p_norm(xp, w, p, pool=pool)
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
        if swap:
            # (gu - gv, -gu - gw, gv + gw) = (ngv - ngu, ngu - gw, gw - ngv) with ngu = -gu and
            # ngv = -gv (negated coefficients: exact), in gp, gn and w's ga; the first by blocks.
            ngu = p_norm_grad_inplace(xp, u, du, p, -c_pos, pool)
            ngv = p_norm_grad_inplace(xp, v, dv, p, -(c_neg * use_v), pool)
            gw = p_norm_grad_inplace(xp, w, dw, p, c_neg * ~use_v, pool)
            for rows in row_blocks(n, pool.shape[0] if pool is not None else n):
                first = xp.subtract(ngv[rows], ngu[rows], out=pool[: rows.stop - rows.start])
                ngu[rows] -= gw[rows]
                xp.subtract(gw[rows], ngv[rows], out=ngv[rows])
                gw[rows] = first
            grads = (ga, gp, gn)
        else:
            gu = p_norm_grad_inplace(xp, u, du, p, c_pos, pool)
            gv = p_norm_grad_inplace(xp, v, dv, p, c_neg, pool)
            xp.subtract(gu, gv, out=ga)
            xp.negative(gu, out=gu)
            grads = (ga, gu, gv)
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


#: The four scratch matrices of the MMD's kernel blocks (:class:`_KernelBlocks`) hold together
#: about this share of the gradient's elements, with MMD_MIN_ROWS to MMD_MAX_ROWS kernel rows
#: a block. At 1024x64 vs 1024x64 that is 8 rows (CPU time 64 ms against 69 ms for whole
#: kernel matrices; 16 rows: 54 ms at twice the scratch; 4 rows: 85 ms).
MMD_SCRATCH_SHARE = 0.5
MMD_MIN_ROWS, MMD_MAX_ROWS = 8, 64


def mmd_block_rows(n: int, width: int, m: int) -> int:
    """Kernel rows of one MMD block for ``n`` guesses rows of ``width`` against ``m`` columns."""
    rows = int(MMD_SCRATCH_SHARE * n * max(width, 1)) // (4 * max(m, 1))
    return max(MMD_MIN_ROWS, min(MMD_MAX_ROWS, rows))


class _KernelBlocks:
    """Row blocks of the RBF kernel matrix between ``left`` rows and ``right`` (centred samples).

    :meth:`rows` gives, for the left rows ``rows`` (an ``(R, D)`` array ``left``),
    the block's ``K = sum_s exp(-sq scale^2 / b_s)`` and, with ``grad``,
    ``dK/d(sq scale^2)``, in scratch matrices reused from block to block; ``sq``
    are the squared distances ``|l|^2 + |r|^2 - 2 l.r`` clipped at 0 (0 on the
    diagonal ``diagonal_from`` on, when the two samples are one). The bits per
    entry are those of :func:`squared_distances` and :func:`rbf_kernels`.
    """

    def __init__(self, xp, right, right_norms, bandwidths, scale, rows: int):
        self.xp, self.right, self.right_norms = xp, right, right_norms
        top = float(numpy.finfo(right.dtype).max)
        self.terms = [(-min(scale * scale / b, top), 1.0 / b) for b in bandwidths]
        shape = (max(1, rows), right.shape[0])
        self.buffers = [xp.empty(shape, dtype=right.dtype) for _ in range(4)]

    def rows(self, left, left_norms, *, grad: bool, diagonal_from=None):
        xp, k_rows = self.xp, left.shape[0]
        product, sq, k, dk = (b[:k_rows] for b in self.buffers)
        xp.matmul(left, self.right.T, out=product)
        xp.add(left_norms[:, None], self.right_norms[None, :], out=sq)
        product *= 2.0
        sq -= product
        xp.maximum(sq, 0.0, out=sq)
        if diagonal_from is not None:  # a point's distance to itself is 0, not the expansion's rounding error
            sq.reshape(-1)[diagonal_from :: sq.shape[1] + 1][:k_rows] = 0.0
        e = product
        for i, (factor, inverse) in enumerate(self.terms):
            xp.multiply(sq, factor, out=e)
            xp.exp(e, out=e)
            if i == 0:
                k[...] = e
            else:
                k += e
            if grad:
                e *= inverse
                if i == 0:
                    xp.negative(e, out=dk)
                else:
                    dk -= e
        return k, (dk if grad else None)


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

    Memory: the kernel matrices are made a few rows at a time
    (:func:`mmd_block_rows`: four ``(rows, M)`` scratch matrices of about
    half the gradient together, :class:`_KernelBlocks`), each row's sums and
    gradient taken from its block. Beside the gradient a call
    holds one centred sample at a time: ``y - mean(y)`` for the y-y and x-y
    blocks (the right operand of every product of a block), then
    ``x - mean(x)`` for the x-x blocks (the rows of ``x - mean(y)`` are made
    block by block). At 1024x64 vs 1024x64 float32 that is about 2.7x the
    gradient (163x with whole kernel matrices): the gradient (1x), the
    centred right operand (1x: a product of centred rows needs all of them),
    the block matrices (0.5x) and ``(N,)`` arrays. The per-row sums are those of whole
    matrices; the mean of the y-y kernel is summed in float64.
    """
    with small_ufunc_buffers(xp):
        return _rbf_mmd(xp, guesses, targets, bandwidths, largest, weights, divisor, want_grad)


def _rbf_mmd(xp, guesses, targets, bandwidths, largest, weights, divisor, want_grad):
    dtype = guesses.dtype
    n, m = guesses.shape[0], targets.shape[0]
    einsum = xp.einsum
    if squares_fit(dtype, largest, guesses.shape[1], spread=4.0):
        x, y, scale = guesses, targets, 1.0
    else:
        _, exponent = math.frexp(largest or 1.0)
        scale = math.ldexp(1.0, exponent - 1)
        x, y = guesses.astype("float64") / scale, targets.astype("float64") / scale
    work = x.dtype
    # Distances do not change under a shift: each block is centred on a mean of
    # its own rows (x's for x-x, y's for x-y and y-y), so that a sample far from
    # the origin or from the other sample keeps its own distances' digits.
    centre = y.mean(axis=0)
    y = y - centre
    yy = einsum("ij,ij->i", y, y)
    step = mmd_block_rows(n, x.shape[1], max(n, m))
    w = None if weights is None else weights.astype(work, copy=False)
    # y-y: only the mean of the kernel.
    kernels = _KernelBlocks(xp, y, yy, bandwidths, scale, min(step, max(n, m)))
    kyy_rows = xp.empty((m,), dtype=work)
    for rows in row_blocks(m, step):
        k, _ = kernels.rows(y[rows], yy[rows], grad=False, diagonal_from=rows.start)
        kyy_rows[rows] = k.sum(axis=1)
    kyy_mean = (kyy_rows.sum(dtype="float64") / (m * m)).astype(work)
    # x-y: row means, and the gradient's second term into the gradient.
    grad = xp.empty(x.shape, dtype=work) if want_grad else None
    kxy_mean = xp.empty((n,), dtype=work)
    x_rows = k = dk = b = None
    for rows in row_blocks(n, step):
        x_rows = x[rows] - centre
        k, dk = kernels.rows(x_rows, einsum("ij,ij->i", x_rows, x_rows), grad=want_grad)
        kxy_mean[rows] = k.mean(axis=1)
        if want_grad:
            b = dk
            b *= 4.0 / m if w is None else w[rows, None] * (4.0 / m)
            # sum_a B_ka (x_k - y_a) = rowsum(B)_k x_k - (B @ y)_k, in units of scale
            grad[rows] = b.sum(axis=1)[:, None] * x_rows - b @ y
    del y, yy, x_rows, kernels, k, dk, b  # the kernels' scratch and their right operand, y
    # x-x: centred on x's own mean.
    x_own = x - x.mean(axis=0)
    del x
    xx = einsum("ij,ij->i", x_own, x_own)
    kernels = _KernelBlocks(xp, x_own, xx, bandwidths, scale, min(step, n))
    kxx_mean = xp.empty((n,), dtype=work)
    for rows in row_blocks(n, step):
        k, dk = kernels.rows(x_own[rows], xx[rows], grad=want_grad, diagonal_from=rows.start)
        kxx_mean[rows] = k.mean(axis=1)
        if want_grad:
            a = dk
            a.reshape(-1)[rows.start :: n + 1][: rows.stop - rows.start] = 0.0  # x_k - x_k = 0: only rounding
            if w is None:
                a *= 4.0 / n
            else:
                pair = kernels.buffers[0][: rows.stop - rows.start]  # the product's matrix, free again
                xp.add(w[rows, None], w[None, :], out=pair)
                pair *= 2.0 / n
                a *= pair
            # sum_j A_kj (x_k - x_j) = rowsum(A)_k x_k - (A @ x)_k; minus the x-y term
            own = a.sum(axis=1)[:, None] * x_own[rows] - a @ x_own
            block = xp.subtract(own, grad[rows], out=grad[rows])
            if scale != 1.0:
                block *= scale
            block /= divisor
    per_example = (kxx_mean - 2.0 * kxy_mean + kyy_mean).astype(dtype, copy=False)
    if want_grad:
        grad = grad.astype(dtype, copy=False)
    if weights is not None:
        per_example = per_example * weights
    return grad, per_example
