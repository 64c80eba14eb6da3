"""Row blocks: elementwise maths in cache-sized pieces, with little memory beside the gradient.

An elementwise loss needs a few arrays besides its gradient (the loss
terms, a clipped copy of the guesses, ...). Made at full size, each one
costs the gradient's bytes again (SPEC section 8 allows 10%: 1.1x the
gradient at 4096x50 and 32768x1000, 1.5x at 256x10) and, at 4096x50, its
fresh pages cost more than the arithmetic on it. So the maths runs on
blocks of rows: every temporary is one block, the gradient is written in
place block by block, and each row's loss is reduced while its block is
in cache. The temporaries of the first blocks live in the gradient's own
rows that are still to be written (:func:`scratch_blocks`), those of the
last ones in one buffer the call allocates (the pool, which lends pieces to
any block that needs them), so few blocks are needed (each costs a Python
call per operation) and the buffers a call allocates besides the gradient
stay at about 5% of it at 4096x50. The pool is the fewest rows that give the
blocks the floor below would (:func:`block_plan`, once per shape).

Blocking changes no bit: an elementwise operation gives each element the
same value whatever block it is in (the blocks of a C-contiguous array are
C-contiguous: the same loops run), and a row's reduction sees its whole row.
"""
import contextlib
import functools
import math

import numpy
from thinc.types import Ragged

from .._core import exact_reciprocal

try:
    from numpy._core.umath import clip as _numpy_clip  # numpy 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.umath import clip as _numpy_clip
try:
    from numpy._core.multiarray import c_einsum as _numpy_einsum  # numpy 2
except ImportError:  # pragma: no cover - numpy 1.x, or a numpy that moved it
    _numpy_einsum = getattr(numpy.core.multiarray, "c_einsum", numpy.einsum)

#: Elements of one scratch buffer at most (512 KiB of float32: a block stays in the L2/L3 caches).
BLOCK_ELEMENTS = 1 << 17
#: The scratch buffers a call allocates hold together at most 1/SCRATCH_SHARE of
#: the array's elements (one row per buffer at least): the rest of the scratch
#: is borrowed from the gradient's rows still to be written (:func:`scratch_blocks`).
#: 5% (with the per-example losses, 2% at 4096x50, the peak is about 1.08x the
#: gradient, under SPEC's 1.1x): larger last blocks, so fewer of them (at 4096x50,
#: 14 instead of 16 blocks for three slots, 30 instead of 34 for seven).
SCRATCH_SHARE = 20
#: Elements of one scratch buffer at least: a small batch (a textcat's 256x10)
#: runs in two or three blocks, not a dozen, since each block costs a Python
#: call per operation (a dozen made a 256x10 focal loss 7x slower). The pool
#: is then cut to the fewest rows giving as many blocks (at 256x10, three slots:
#: 0.86x the gradient instead of 1.2x); SPEC's 1.5x there would take 5 blocks or
#: more with three slots (a pool of at most 0.25x the gradient beside the
#: per-example losses and numpy's temporaries). At 4096x50 the share above is
#: larger than this floor.
MIN_BLOCK_ELEMENTS = 1 << 10


@contextlib.contextmanager
def small_ufunc_buffers(xp, size: int = 1024):
    """numpy's ufunc buffers of ``size`` elements instead of 8192 while the body runs.

    numpy fills such a buffer where an operand is broadcast (``(R, 1)``
    against ``(R, C)``) or cast: for an array smaller than 8192 elements (a
    textcat's 256x10, or a row block) one the array's own size, which doubles
    its peak memory. The buffers only hold copies of operands on the way to
    an elementwise loop: the values are the same. (A reduction that casts,
    such as a float64 sum of float32 values, sums by buffer-sized chunks:
    keep those outside.) cupy has no such buffers: nothing changes there.
    """
    if xp is not numpy:
        yield
        return
    old = numpy.setbufsize(size)
    try:
        yield
    finally:
        numpy.setbufsize(old)


#: Arrays of at most this many entries are one block with scratch arrays of their own: at
#: a textcat's 256x10 the Python calls of several blocks cost more than the arithmetic
#: (SPEC's bound there, 1.5x the gradient, is out of reach of any layout: the per-example
#: losses and the call's small arrays alone are about that much).
SMALL_ARRAY = 1 << 14


def power_into(xp, x, exponent: float, out):
    """``x ** exponent`` (``exponent > 0``) written into ``out``: integer exponents up to 8 by
    left-to-right binary powering, products only (numpy's ``pow`` costs 20 times a product)."""
    k = int(exponent)
    if exponent != k or not 1 <= k <= 8:
        return xp.power(x, exponent, out=out)
    bits = bin(k)[3:]  # the bits after the leading one
    if not bits:
        out[...] = x
        return out
    xp.multiply(x, x, out=out)
    if bits[0] == "1":
        out *= x
    for bit in bits[1:]:
        out *= out
        if bit == "1":
            out *= x
    return out


def block_rows(shape, n_buffers: int) -> int:
    """The rows of one block of an array of ``shape`` for maths with ``n_buffers`` scratch buffers."""
    n = int(shape[0]) if len(shape) else 1
    width = max(1, math.prod(int(s) for s in shape[1:]))
    total = n * width // SCRATCH_SHARE
    per_buffer = min(BLOCK_ELEMENTS, max(MIN_BLOCK_ELEMENTS, total // max(n_buffers, 1)))
    return max(1, min(n, per_buffer // width))


def clip_function(xp):
    """``clip(x, low, high, out=...)`` of ``xp``: for numpy its ufunc itself, which ``numpy.clip``
    calls with both bounds given (the same bits, without two Python layers per block)."""
    return _numpy_clip if xp is numpy else xp.clip


def einsum_function(xp):
    """``einsum(subscripts, *operands)`` of ``xp``: for numpy the C function that ``numpy.einsum``
    calls without ``optimize`` (the same bits, without ~12 us of dispatch per call and block)."""
    return _numpy_einsum if xp is numpy else xp.einsum


def row_total(xp, x, weights=None, out=None):
    """:func:`thinc_losses_plus._core.row_sum` (the same sums, the same bits), given ``xp``;
    written into ``out`` (a block of the per-example losses) when given."""
    if x.ndim == 1:
        if weights is None:
            return x if out is None else _put(out, x)
        return xp.multiply(x, weights.reshape(x.shape), out=out)
    einsum, into = einsum_function(xp), ({} if out is None else {"out": out})  # c_einsum refuses out=None
    if weights is None or weights.shape == x.shape:
        operands = (x,) if weights is None else (x, weights)
        return einsum("ij->i" if weights is None else "ij,ij->i", *operands, **into)
    total = einsum("ij->i", x, **into)
    total *= weights.reshape(-1)
    return total


def _spread(out, w):
    out[...] = w
    return out


def _put(out, x):
    out[...] = x
    return out


def grad_finisher(xp, dtype, divisor: float):
    """``finish(block, w)``: :func:`thinc_losses_plus._core.scale_grad` of one block (the
    same bits), its reciprocal worked out once per call instead of once per block."""
    inverse = exact_reciprocal(divisor) if numpy.dtype(dtype).itemsize >= 4 else None

    def finish(block, w):
        if w is not None:
            block *= w
        if divisor != 1:
            if inverse is None:
                xp.divide(block, divisor, out=block)
            else:
                xp.multiply(block, inverse, out=block)
        return block

    return finish


def rows_of(weights, rows):
    """The block ``rows`` of ``weights`` (None, or an array with one entry or row per row)."""
    return None if weights is None else weights[rows]


def per_block(value, rows, buf):
    """``value`` for the block ``rows``: None, an array with one entry or row per row, or a
    function ``value(rows, buf)`` making the block's values into ``buf`` (a scratch array of
    the block's shape): weights or targets made block by block."""
    if value is None:
        return None
    if callable(value):
        return value(rows, buf)
    return value[rows]


def scratch_blocks(xp, work, n_slots: int):
    """``(rows, scratch)`` for each block of rows of ``work``, an array written block by block.

    ``scratch`` is a list of ``n_slots`` arrays of the block's shape: views of
    ``work``'s rows beyond the block (free until their own turn comes) or
    pieces of one buffer that the call allocates (the pool), whichever gives
    the largest block: a block of ``b`` rows with ``j`` pieces from the pool
    needs ``(n_slots - j + 1) b`` rows still to be written and ``j b`` rows of
    the pool. While much of ``work`` is still to be written a block takes
    ``1 / (n_slots + 1)`` of it (up to ``BLOCK_ELEMENTS`` per slot), so that
    even under the memory bound a batch of 4096x50 needs about a dozen blocks,
    not dozens (each block costs a few Python calls per operation); the pool
    then lends pieces to the last blocks (the last one takes the pool alone).
    The pool has at most ``n_slots`` x :func:`block_rows` rows, and no more
    than the same number of blocks needs (:func:`block_plan`). A block's scratch
    is free once the next block is asked for; the caller writes only the
    block's own rows of ``work``.
    """
    shape = work.shape
    n = int(shape[0])
    width = max(1, math.prod(int(s) for s in shape[1:]))
    cap = max(1, BLOCK_ELEMENTS // width)
    pool_rows, plan = block_plan(n, n_slots, block_rows(shape, n_slots) * n_slots, cap)
    pool = None
    for start, step, own in plan:
        borrowed = n_slots - own
        tail = work[start + step : start + (borrowed + 1) * step]
        scratch = [tail[i * step : (i + 1) * step] for i in range(borrowed)]
        if own:
            if pool is None:
                pool = xp.empty((pool_rows,) + tuple(shape[1:]), dtype=work.dtype)
            scratch += [pool[i * step : (i + 1) * step] for i in range(own)]
        yield slice(start, start + step), scratch


@functools.lru_cache(maxsize=1024)
def block_plan(n: int, n_slots: int, most: int, cap: int):
    """``(pool rows, ((start, rows, pieces from the pool), ...))`` of :func:`scratch_blocks` for
    ``n`` rows, ``n_slots`` slots, a pool of at most ``most`` rows and blocks of at most ``cap``
    rows: each block the largest the rows still to be written and the pool allow, and the pool
    the fewest rows with which the blocks are no more than with ``most`` (the same Python
    calls, less memory: at 256x10 with three slots 220 rows instead of 306, 0.86x the gradient
    instead of 1.2x). Worked out once per shape (a bisection)."""
    if n_slots == 0 or n == 0:
        return most, _plan(n, n_slots, most, cap)
    target = len(_plan(n, n_slots, most, cap))

    def fits(pool_rows):
        plan = _plan(n, n_slots, pool_rows, cap)
        return plan is not None and len(plan) <= target

    low, high = n_slots, most  # the last block takes n_slots pieces of the pool: one row each at least
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    if not fits(high):  # pragma: no cover - the count is monotone in practice
        high = most
    return high, _plan(n, n_slots, high, cap)


def _plan(n: int, n_slots: int, pool_rows: int, cap: int):
    """The blocks with a pool of ``pool_rows`` rows (None if a block cannot fit: too small a pool)."""
    plan, start = [], 0
    while start < n:
        left = n - start
        step, step_own = 0, 0
        for own in range(n_slots + 1):
            borrowed = n_slots - own
            rows = left // (borrowed + 1) if borrowed else left
            if own:
                rows = min(rows, pool_rows // own)
            rows = min(rows, cap)
            if rows > step:
                step, step_own = rows, own
        if not step:  # a pool of fewer than n_slots rows: no block fits
            return None
        plan.append((start, step, step_own))
        start += step
    return tuple(plan)


def put_terms(xp, out, loss, w):
    """Write the block's elementwise ``loss * w`` (``w``: None, or one weight per row or element) into ``out``."""
    if w is None:
        out[...] = loss
    else:
        xp.multiply(loss, w, out=out)
    return out


def blocked_elementwise(
    xp, maths, x, targets, *, weights, divisor: float, want_grad: bool, n_slots: int, terms=None, **settings
):
    """``(grad * weights / divisor or None, row sums of loss * weights)`` of an elementwise loss, by row blocks.

    ``maths(xp, x_block, t_block, out=grad_block, scratch=[...], want_grad=..., **settings)``
    returns ``(grad or None, elementwise loss)`` of a block, writing the
    gradient into ``out`` and every other array of the block's size into
    the ``n_slots`` scratch arrays. ``targets`` and ``weights`` are arrays
    with one row per row of ``x`` (weights may also be None), or functions
    ``f(rows, buf)`` writing the block's values into a scratch array ``buf``.
    The bits are those of one call on the whole arrays followed by
    :func:`thinc_losses_plus._core.elementwise_result`.

    ``terms``: None, or an array of ``x``'s shape and dtype (``want_grad``
    false) into which the elementwise ``loss * weights`` is written, the
    unreduced losses (``get_loss_per_element``) of the same pass; it is then
    the work buffer too, and what is returned in the gradient's place.
    """
    made = [v for v in (targets, weights) if callable(v)]
    finish = grad_finisher(xp, x.dtype, divisor)
    # Without a gradient, a work buffer of the same shape plays its part (get_loss), or the terms.
    work = terms if terms is not None and not want_grad else xp.empty(x.shape, dtype=x.dtype)
    per_example = xp.empty(x.shape[:1], dtype=x.dtype)
    for rows, scratch in scratch_blocks(xp, work, n_slots + len(made)):
        extra = scratch[n_slots:]
        t = per_block(targets, rows, extra[0] if callable(targets) else None)
        w = per_block(weights, rows, extra[-1] if callable(weights) else None)
        g, loss = maths(xp, x[rows], t, out=work[rows], scratch=scratch[:n_slots], want_grad=want_grad, **settings)
        row_total(xp, loss, w, out=per_example[rows])
        if g is not None:
            if w is not None and scratch and (w.shape != g.shape or (w.size > w.shape[-1] and 0 in w.strides)):
                # a row or column of weights spread into the free scratch 0 first: numpy buffers
                # a broadcast operand (8192 elements, 4% of the gradient at 4096x50); the same bits
                w = _spread(scratch[0], w)
            finish(g, w)
        elif work is terms:
            put_terms(xp, work[rows], loss, w)
    return (work if want_grad or work is terms else None), per_example


class OnePassElements:
    """Mixin: :meth:`~thinc_losses_plus.LossCalculator.evaluate_per_element` from one evaluation.

    For an elementwise calculator whose ``elementwise_pass(guesses, truths, *,
    sample_weight, divisor, want_grad, want_terms)`` is its ``compute`` and,
    with ``want_terms``, returns ``(terms, per_example)``: the elementwise
    losses times their weights, of the work array's shape, made in the same
    pass (and under the same checks, one transfer) as the per-example losses,
    instead of one evaluation per column (:func:`~thinc_losses_plus._core.probe_elements`).
    """

    def evaluate_per_element(self, guesses, truths, *, sample_weight=None):
        if isinstance(guesses, Ragged):  # refused by evaluate, with its message
            return super().evaluate_per_element(guesses, truths, sample_weight=sample_weight)
        self.count_examples(guesses)
        terms, _ = self.elementwise_pass(
            guesses, truths, sample_weight=sample_weight, divisor=1, want_grad=False, want_terms=True
        )
        first = guesses[0] if isinstance(guesses, tuple) else guesses
        return terms.reshape(first.shape)
