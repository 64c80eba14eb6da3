"""Maths of the sigmoid family and of the margin losses: plain functions.

Every loss function takes the array module ``xp`` of its inputs first (as
Thinc's ``ops``), then the guesses and the targets, then keyword-only
settings and ``want_grad``, and returns ``(grad or None, losses)``:

* elementwise losses (cross-entropy, focal, hinge, logistic) take ``(N, C)``
  guesses and targets and return the **elementwise** loss and its derivative
  with respect to the guesses, both ``(N, C)``, unweighted and undivided
  (the caller weights, divides and sums the rows:
  :func:`thinc_losses_plus._core.elementwise_result`);
* :func:`multi_margin_loss` couples the columns of a row, so it takes the
  weights and the divisor itself and returns the **row** losses ``(N,)`` and
  the finished gradient.

Nothing here checks values or parses labels (the input layer and the label
layer do), and nothing writes into an input: the functions work in place
only on arrays they allocated, or on the ``out`` and ``scratch`` arrays they
are given (the calculators run them on row blocks, writing the gradient in
place: :func:`thinc_losses_plus.functional.blocks.blocked_elementwise`).
At 4096x50 the cost of fresh temporaries (page faults) is comparable to
the arithmetic, and numpy's ``clip`` is many times faster than
``maximum``/``minimum`` or masked selects (``where``). Signs are set and
flipped on the bits where that is exact (:func:`exp_neg_abs`,
:func:`flip_signs`): one integer operation instead of one or two float ones.
"""
import math

import numpy

from .blocks import clip_function, scratch_blocks


def _numpy_log1p_is_vectorised() -> bool:
    """Whether numpy's ``log1p`` runs vectorised on this CPU (AVX512_SKX: numpy's SVML loops,
    numpy >= 1.22), as fast as its ``log`` (on AVX2 machines it is a scalar loop, 3-4x slower)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # numpy 2
    except ImportError:  # pragma: no cover - numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return False
    major, minor = (int(v) for v in numpy.__version__.split(".")[:2])
    return (major, minor) >= (1, 22) and bool(__cpu_features__.get("AVX512_SKX"))


#: numpy's ``log1p`` is vectorised here (see :func:`log1p_small`); cupy's always is.
NUMPY_LOG1P_IS_FAST = _numpy_log1p_is_vectorised()

#: Probabilities are clipped to ``[PROB_EPS, 1 - PROB_EPS]`` (Keras' epsilon)
#: so that ``p = 0`` or ``p = 1`` gives a finite loss and gradient; 1e-7 is
#: about the smallest margin for which ``1 - PROB_EPS < 1`` in float32.
PROB_EPS = 1e-7


# Building blocks ---------------------------------------------------------------


def slot(xp, scratch, i: int, like):
    """Scratch array ``i`` (of ``like``'s shape and dtype), or a fresh one without ``scratch``."""
    return xp.empty_like(like) if scratch is None else scratch[i]


_BITS = {4: (numpy.dtype("int32"), numpy.int32(-(2**31)), 8), 8: (numpy.dtype("int64"), numpy.int64(-(2**63)), 11)}


def bits_type(dtype):
    """The signed integer type of ``dtype``'s size (float32: int32, float64: int64), to view its bits."""
    return _BITS[dtype.itemsize][0]


def sign_bit(dtype):
    """``dtype``'s sign bit, as an integer of :func:`bits_type` (the bits of ``-0.0``)."""
    return _BITS[dtype.itemsize][1]


def flip_signs(xp, x, bits, out):
    """``x`` with its sign flipped where ``bits`` (a float array of ``x``'s shape) is ``-0.0``
    and kept where it is ``+0.0``: an exclusive or of the bits, into ``out``; ``x * s`` exactly
    for ``s`` of -1 or 1 (the same bits, one integer operation)."""
    kind = bits_type(x.dtype)
    xp.bitwise_xor(x.view(kind), bits.view(kind), out=out.view(kind))
    return out


def exp_neg_abs(xp, x, out=None):
    """``exp(-|x|)``, in ``(0, 1]`` for any ``x``; a fresh array (or ``out``).

    ``-|x|`` is ``x`` with its sign bit set (one integer operation, the bits of
    ``negative(abs(x))``, NaN included).
    """
    e = xp.empty_like(x) if out is None else out
    kind = bits_type(x.dtype)
    xp.bitwise_or(x.view(kind), sign_bit(x.dtype), out=e.view(kind))
    return xp.exp(e, out=e)


def softplus_parts(xp, x, scratch=None):
    """``(softplus(x), exp(-|x|))``, stable for any ``x``: ``max(x, 0) + log1p(exp(-|x|))``.

    Fresh arrays, or scratch arrays 1 and 0 (scratch 2 is used on the way).

    >>> import numpy
    >>> softplus, _ = softplus_parts(numpy, numpy.asarray([-1e4, 0.0, 1e4]))
    >>> softplus.tolist() == [0.0, numpy.log(2.0), 1e4]
    True
    """
    e = exp_neg_abs(xp, x, None if scratch is None else scratch[0])
    softplus = log1p_small(xp, e, *(() if scratch is None else scratch[1:3]))
    softplus += clip_function(xp)(x, 0.0, math.inf, out=None if scratch is None else scratch[2])
    return softplus, e


def log1p_needs_buffer(xp) -> bool:
    """Whether :func:`log1p_small` uses its ``lost`` buffer with ``xp`` (it does where it
    falls back on :func:`log1p_unit`): a loss whose scratch slots are counted tightly asks."""
    return xp is numpy and not NUMPY_LOG1P_IS_FAST


def log1p_small(xp, e, out=None, lost=None):
    """``log1p(e)`` for ``e`` in ``[0, 1]``, a fresh array (or ``out``; ``lost`` may be used on the way).

    ``xp.log1p`` itself where it is vectorised (cupy; numpy on AVX512 CPUs, whose
    SVML ``log1p`` is within 2 ulp in float32 and 1 in float64), else
    :func:`log1p_unit` (numpy's scalar ``log1p`` loop is 3-4x slower than its
    ``log``). Both keep full relative precision as ``e -> 0``.
    """
    if not log1p_needs_buffer(xp):
        return xp.log1p(e, out=out)
    return log1p_unit(xp, e, out, lost)


def sigmoid_into(xp, out, x, e):
    """:func:`sigmoid_from_parts` written into the buffer ``out`` (``e`` becomes ``1 + e``)."""
    # exp(min(x, 0)) without a second exp: e where x < 0 (the same bits), else 1, as
    # max([x >= 0], e) (e is in (0, 1]; NaN stays NaN); 5-8x faster than ``where``.
    xp.greater_equal(x, 0, out=out)
    xp.maximum(out, e, out=out)
    e += 1.0
    out /= e
    return out


def log1p_unit(xp, e, out=None, lost=None):
    """``log1p(e)`` for ``e`` in ``[0, 1]``, a fresh array (or ``out``, using ``lost`` on the way):
    ``log(u) + (e - (u - 1)) / u``, ``u = 1 + e``.

    The correction term restores what rounding ``1 + e`` lost (``u - 1`` is
    exact for ``u`` in ``[1, 2]``), so the result keeps full relative
    precision as ``e -> 0`` (it is ``e`` where ``1 + e`` rounds to 1), like
    ``log1p``. numpy's ``log`` is vectorised where its ``log1p`` is not
    (3-4x faster on AVX2 machines, the largest cost of the sigmoid family).

    >>> import numpy
    >>> e = numpy.asarray([0.0, 1e-30, 1e-9, 0.5, 1.0])
    >>> bool(numpy.allclose(log1p_unit(numpy, e), numpy.log1p(e), rtol=1e-15, atol=0))
    True
    """
    out = xp.add(e, 1.0, out=out)
    lost = xp.subtract(out, 1.0, out=lost)
    xp.subtract(e, lost, out=lost)
    lost /= out
    xp.log(out, out=out)
    out += lost
    return out


def sigmoid_from_parts(xp, x, e):
    """``sigmoid(x) = exp(min(x, 0)) / (1 + exp(-|x|))`` from ``e = exp(-|x|)``.

    No overflow and no cancellation for any ``x``. ``e`` is overwritten
    with ``1 + e``.
    """
    return sigmoid_into(xp, xp.empty_like(e), x, e)


def power(xp, q, gamma: float, out=None):
    """``q ** gamma``, a fresh array (or ``out``); the common exponents by multiplication
    (numpy's general ``pow`` is ~30x slower than a product)."""
    if out is None:
        out = xp.empty_like(q)
    if gamma == 0.0:
        out.fill(1.0)
    elif gamma == 1.0:
        out[...] = q
    elif gamma == 2.0:
        xp.multiply(q, q, out=out)
    elif gamma == 3.0:
        xp.multiply(q, q, out=out)
        out *= q
    else:
        xp.power(q, gamma, out=out)
    return out


def focal_alpha_weights(xp, targets, alpha: float, out=None):
    """RetinaNet's balance ``a_t = alpha t + (1 - alpha)(1 - t)``, elementwise (into ``out``)."""
    balance = xp.multiply(targets, 2.0 * alpha - 1.0, out=out)
    balance += 1.0 - alpha
    return balance


def _add_focusing_term(xp, grad, ratio, modulator, t, ce, gamma: float, buf=None) -> None:
    """``grad += gamma * ratio * modulator * (1 - 2t) * ce``, reusing ``ratio`` (and ``buf``)."""
    ratio *= modulator
    ratio *= ce
    one_minus_2t = xp.multiply(t, -2.0, out=buf)
    one_minus_2t += 1.0
    ratio *= one_minus_2t
    ratio *= gamma
    grad += ratio


# Cross-entropy ----------------------------------------------------------------------


def sigmoid_cross_entropy_with_logits(
    xp, logits, targets, *, pos_weight=None, want_grad: bool = True, out=None, scratch=None
):
    """Elementwise ``-[pw t log s(x) + (1 - t) log(1 - s(x))]`` of logits ``x``.

    ``s`` is the sigmoid, ``t`` the target in ``[0, 1]`` and ``pw`` the
    positive weight (a number or a ``(1, C)`` array; None is 1). Computed
    stably for any logit: ``-log s(x) = softplus(x) - x`` and
    ``-log(1 - s(x)) = softplus(x)``.

    Gradient with respect to the logits ``x``: ``s(x) (1 + (pw - 1) t) - pw t``
    (``s(x) - t`` without ``pos_weight``).

    Returns ``(grad or None, elementwise loss)``; the gradient is written
    into ``out`` and the rest into the 3 arrays of ``scratch`` when given.

    >>> import numpy
    >>> grad, loss = sigmoid_cross_entropy_with_logits(numpy, numpy.asarray([[0.0]]), numpy.asarray([[1.0]]))
    >>> round(float(loss[0, 0]), 4), float(grad[0, 0])  # log(2), s(0) - 1
    (0.6931, -0.5)
    """
    x, t = logits, targets
    # Buffers are reused as they fall free: at most three of the logits' size
    # live at once besides the gradient (``out``).
    loss, e = softplus_parts(xp, x, scratch)
    scale = None
    if pos_weight is None:
        buf = xp.multiply(t, x, out=out)
    else:
        buf = column_times(xp, pos_weight, t, out=xp.empty_like(t) if out is None else out)  # pw t
        scale = xp.subtract(buf, t, out=None if scratch is None else scratch[2])
        scale += 1.0  # (1 - t) + pw t
        loss *= scale
        buf *= x
    loss -= buf  # - pw t x
    if not want_grad:
        return None, loss
    grad = sigmoid_into(xp, buf, x, e)
    del e
    if scale is None:
        grad -= t
    else:
        grad *= scale
        grad -= column_times(xp, pos_weight, t, out=scale)
    return grad, loss


def column_times(xp, weights, x, out):
    """``weights * x`` into ``out`` (``x``'s shape) for a number or a ``(1, C)`` row of
    ``weights``: the row spread into ``out`` first, then one product without broadcasting
    (the same bits; numpy buffers a broadcast operand, 8192 elements, 4% of the gradient at
    4096x50, and its broadcast loop is 1.5x slower than a copy and a product)."""
    if not hasattr(weights, "shape"):
        return xp.multiply(weights, x, out=out)
    out[...] = weights
    out *= x
    return out


def binary_cross_entropy(
    xp, probs, targets, *, pos_weight=None, eps: float = PROB_EPS, want_grad: bool = True, out=None, scratch=None
):
    """Elementwise ``-[pw t log p + (1 - t) log(1 - p)]`` of probabilities ``p``.

    ``p`` is clipped to ``[eps, 1 - eps]`` first; the loss and the gradient
    are both evaluated at the clipped ``p``, so ``p`` of exactly 0 or 1 gives
    finite values. ``pw``: a number or a ``(1, C)`` array (None is 1).

    Gradient with respect to the probabilities ``p``:
    ``-pw t / p + (1 - t) / (1 - p)``.

    Returns ``(grad or None, elementwise loss)``; the gradient is written
    into ``out`` and the rest into the arrays of ``scratch`` when given (3, or 4
    with ``pos_weight``).

    >>> import numpy
    >>> grad, loss = binary_cross_entropy(numpy, numpy.asarray([[0.8]]), numpy.asarray([[1.0]]))
    >>> round(float(loss[0, 0]), 4), float(grad[0, 0])  # -log(0.8), -1 / 0.8
    (0.2231, -1.25)
    """
    t = targets
    p = clip_function(xp)(probs, eps, 1.0 - eps, out=slot(xp, scratch, 0, probs))
    rest = xp.subtract(1.0, t, out=slot(xp, scratch, 1, probs))
    loss = xp.log(p, out=slot(xp, scratch, 2, probs))
    pt = t if pos_weight is None else column_times(xp, pos_weight, t, out=slot(xp, scratch, 3, probs))
    loss *= pt
    buf = xp.negative(p, out=out)
    xp.log1p(buf, out=buf)
    buf *= rest
    loss += buf
    xp.negative(loss, out=loss)
    if not want_grad:
        return None, loss
    grad = xp.subtract(1.0, p, out=buf)
    xp.divide(rest, grad, out=grad)
    grad -= xp.divide(pt, p, out=rest)
    return grad, loss


# Focal loss --------------------------------------------------------------------------


def sigmoid_focal_loss_with_logits(xp, logits, targets, *, gamma: float, want_grad: bool = True, out=None, scratch=None):
    """Elementwise ``(1 - p_t)^gamma * ce`` of logits ``x`` (before ``alpha``).

    ``ce`` is the binary cross-entropy of ``s(x)`` and the target ``t``, and
    ``1 - p_t = s(x) (1 - t) + s(-x) t`` (torchvision's ``sigmoid_focal_loss``;
    multiply by :func:`focal_alpha_weights` for ``alpha``).

    Gradient with respect to the logits ``x``: with ``q = 1 - p_t``,
    ``q^gamma (s(x) - t) + gamma q^gamma (s(x) s(-x) / q) (1 - 2t) ce``;
    ``s(x) s(-x) / q <= 2`` is computed directly, so saturated logits stay
    finite.

    Returns ``(grad or None, elementwise loss)``; the gradient is written
    into ``out`` and the rest into the 5 arrays of ``scratch`` when given.
    """
    x, t = logits, targets
    ce, e = softplus_parts(xp, x, scratch)  # scratch 1 and 0
    ce -= xp.multiply(t, x, out=slot(xp, scratch, 3, x))
    # s(-x) = exp(-max(x, 0)) / (1 + e), no cancellation
    clip = clip_function(xp)
    sig_neg = clip(x, 0.0, math.inf, out=slot(xp, scratch, 2, x))
    xp.negative(sig_neg, out=sig_neg)
    xp.exp(sig_neg, out=sig_neg)
    sig = sigmoid_into(xp, xp.empty_like(e) if out is None else out, x, e)  # e is now 1 + e
    sig_neg /= e
    q = xp.subtract(1.0, t, out=e)
    q *= sig
    q += xp.multiply(sig_neg, t, out=slot(xp, scratch, 3, x))
    modulator = power(xp, q, gamma, out=slot(xp, scratch, 3, x))
    loss = xp.multiply(modulator, ce, out=slot(xp, scratch, 4, x))
    if not want_grad:
        return None, loss
    ratio = None
    if gamma:
        ratio = sig_neg
        ratio *= sig
        ratio /= clip(q, float(numpy.finfo(q.dtype).tiny), math.inf, out=q)
    grad = sig
    grad -= t
    grad *= modulator
    if ratio is not None:  # q (scratch 0) is free again
        _add_focusing_term(xp, grad, ratio, modulator, t, ce, gamma, None if scratch is None else scratch[0])
    return grad, loss


def binary_focal_loss(
    xp, probs, targets, *, gamma: float, eps: float = PROB_EPS, want_grad: bool = True, out=None, scratch=None
):
    """Elementwise ``(1 - p_t)^gamma * ce`` of probabilities ``p`` (before ``alpha``).

    ``p`` is clipped to ``[eps, 1 - eps]`` (so ``q = 1 - p_t >= eps``),
    ``ce = -[t log p + (1 - t) log(1 - p)]`` and ``p_t = p t + (1 - p)(1 - t)``.

    Gradient with respect to the probabilities ``p``, at the clipped ``p``:
    ``q^gamma (-t/p + (1 - t)/(1 - p)) + gamma q^(gamma - 1) (1 - 2t) ce``.

    Returns ``(grad or None, elementwise loss)``; the gradient is written
    into ``out`` and the rest into the 7 arrays of ``scratch`` when given.
    """
    t = targets
    # ce as binary_cross_entropy computes it, keeping its clipped p and 1 - t
    p = clip_function(xp)(probs, eps, 1.0 - eps, out=slot(xp, scratch, 0, probs))
    rest = xp.subtract(1.0, t, out=slot(xp, scratch, 1, probs))
    ce = xp.log(p, out=slot(xp, scratch, 2, probs))
    ce *= t
    buf = xp.negative(p, out=slot(xp, scratch, 3, probs))
    xp.log1p(buf, out=buf)
    buf *= rest
    ce += buf
    xp.negative(ce, out=ce)
    q = xp.multiply(p, rest, out=buf)
    one_minus_p = xp.subtract(1.0, p, out=slot(xp, scratch, 4, probs))
    q += xp.multiply(one_minus_p, t, out=slot(xp, scratch, 5, probs))
    modulator = power(xp, q, gamma, out=slot(xp, scratch, 5, probs))
    loss = xp.multiply(modulator, ce, out=slot(xp, scratch, 6, probs))
    if not want_grad:
        return None, loss
    grad = xp.divide(rest, one_minus_p, out=one_minus_p if out is None else out)
    grad -= xp.divide(t, p, out=rest)
    grad *= modulator
    if gamma:
        ratio = xp.divide(1.0, q, out=q)
        _add_focusing_term(xp, grad, ratio, modulator, t, ce, gamma, None if scratch is None else scratch[4])
    return grad, loss


# Margin losses ------------------------------------------------------------------------


def hinge_loss(
    xp, scores, signs, *, margin: float, squared: bool = False, want_grad: bool = True, out=None, scratch=None
):
    """Elementwise ``max(0, margin - y x)`` (``squared``: its square) of scores ``x``.

    ``y`` (``signs``) is -1 or 1.

    Gradient with respect to the scores ``x``: ``-y`` where
    ``margin - y x > 0`` and 0 elsewhere, 0 at the kink (``squared``:
    ``-2 y max(0, margin - y x)``).

    Returns ``(grad or None, elementwise loss)``; the gradient is written
    into ``out`` and the loss into the 1 array of ``scratch`` when given.

    >>> import numpy
    >>> grad, loss = hinge_loss(numpy, numpy.asarray([[0.5, -2.0]]), numpy.asarray([[1.0, 1.0]]), margin=1.0)
    >>> loss.tolist(), grad.tolist()
    ([[0.5, 3.0]], [[-1.0, -1.0]])
    """
    slack = xp.multiply(signs, scores, out=out)
    xp.subtract(margin, slack, out=slack)
    active = clip_function(xp)(slack, 0.0, math.inf, out=slot(xp, scratch, 0, slack))  # faster than maximum
    grad = None
    if squared:
        if want_grad:
            grad = xp.multiply(signs, active, out=slack)
            grad *= -2.0
        active *= active  # in place: the loss
    elif want_grad:
        # [slack > 0] as 1.0 / 0.0 in slack itself: signs times it has the bits of signs times the bools
        grad = xp.greater(slack, 0, out=slack)
        xp.multiply(signs, grad, out=grad)
        grad *= -1.0
    return grad, active


def logistic_loss(
    xp,
    scores,
    signs,
    *,
    negated: bool = False,
    sign_bits: bool = False,
    binary_labels: bool = False,
    want_grad: bool = True,
    out=None,
    scratch=None,
):
    """Elementwise ``log(1 + exp(-y x))`` of scores ``x`` (a stable softplus); ``y`` is -1 or 1.

    ``negated``: ``signs`` holds ``-y`` instead (two operations fewer, the
    same bits: ``(-y) x = -(y x)`` exactly). ``sign_bits``: ``signs`` holds
    ``-y`` as a sign on zero, ``-0.0`` for ``y = 1`` and ``+0.0`` for ``y = -1``
    (what :func:`label_sign_bits` makes of 0/1 labels): multiplying by ``-y``
    is then flipping a sign bit (:func:`flip_signs`, the same bits).
    ``binary_labels``: ``signs`` holds 0/1 labels ``t`` (``y = 2t - 1``), made
    into those sign bits in the gradient's buffer and again, at the end, in a
    scratch array that is free by then (no array of signs beside the block).

    Gradient with respect to the scores ``x``: ``-y s(-y x)``, finite for any score.

    Returns ``(grad or None, elementwise loss)``; the gradient is written
    into ``out`` and the rest into the arrays of ``scratch`` when given: 2,
    or 3 where :func:`log1p_needs_buffer` (:func:`logistic_slots`).
    """
    # z = -y x in ``out``; the loss max(z, 0) + log1p(e), e = exp(-|z|); then out becomes
    # max(z, 0), [z > 0] and the sigmoid s(z) = max([z > 0], e) / (1 + e) in place (at
    # z = 0, e = 1: the same as [z >= 0]), 12 passes in all with sign bits (13 from 0/1 labels).
    if sign_bits or binary_labels:
        kind, _, shift = _BITS[scores.dtype.itemsize]
        z = xp.empty_like(scores) if out is None else out
        z_bits = z.view(kind)
        if binary_labels:  # label_sign_bits into z, then flip_signs in place
            flips = xp.left_shift(signs.view(kind), shift, out=z_bits)
            xp.bitwise_xor(flips, scores.view(kind), out=z_bits)
        else:
            flips = signs.view(kind)
            xp.bitwise_xor(scores.view(kind), flips, out=z_bits)  # flip_signs, the views made once
    else:
        z = xp.multiply(signs, scores, out=out)
        if not negated:
            xp.negative(z, out=z)
    e = exp_neg_abs(xp, z, slot(xp, scratch, 0, z))
    loss = log1p_small(xp, e, slot(xp, scratch, 1, z), None if scratch is None or len(scratch) < 3 else scratch[2])
    positive = clip_function(xp)(z, 0.0, math.inf, out=z)
    loss += positive
    if not want_grad:
        return None, loss
    grad = xp.greater(positive, 0, out=positive)
    xp.maximum(grad, e, out=grad)
    e += 1.0
    grad /= e
    if binary_labels:  # the sign bits again, into 1 + e (free now)
        flips = xp.left_shift(signs.view(kind), shift, out=e.view(kind))
    if sign_bits or binary_labels:
        xp.bitwise_xor(z_bits, flips, out=z_bits)  # grad is z's buffer
    else:
        grad *= signs
        if not negated:
            xp.negative(grad, out=grad)
    return grad, loss


def label_sign_bits(xp, labels, out):
    """``-y`` of 0/1 ``labels`` (``y = 2t - 1``) as a sign on zero, into ``out``: ``-0.0`` for 1,
    ``+0.0`` for 0 (:func:`logistic_loss`'s ``sign_bits``). The bits of ``1.0`` shifted left
    until the lowest bit of its exponent is the sign bit (one integer operation); other
    values give other bits (the labels are checked besides)."""
    kind, _, shift = _BITS[labels.dtype.itemsize]  # shift: 8 * itemsize - 1 - finfo(dtype).nmant
    xp.left_shift(labels.view(kind), shift, out=out.view(kind))
    return out


def logistic_slots(xp) -> int:
    """The scratch arrays :func:`logistic_loss` uses with ``xp``."""
    return 3 if log1p_needs_buffer(xp) else 2


def multi_margin_loss(
    xp, scores, labels, *, p: int, margin: float, weights=None, divisor: float = 1, want_grad: bool = True
):
    """PyTorch's ``multi_margin_loss`` of each row of scores ``x`` against its class ``y``.

    Row loss: ``sum_{i != y} w_i max(0, margin - x_y + x_i)^p / C`` for ``p``
    1 or 2, where ``weights`` (None, or broadcastable to ``(N, C)``: class
    weight of the gold class times sample weights) gives ``w``. ``labels``
    are valid class indices (an ``(N,)`` int array).

    Gradient with respect to the scores ``x``, divided by ``divisor``: for
    ``i != y``, ``w_i p h_i^(p-1) [h_i > 0] / C`` with
    ``h_i = margin - x_y + x_i`` (0 at the kink when ``p = 1``), and ``x_y``
    gets minus their sum.

    Returns ``(grad or None, row losses (N,))``.

    >>> import numpy
    >>> grad, loss = multi_margin_loss(numpy, numpy.asarray([[2.0, 1.5, -1.0]]), numpy.asarray([0]), p=1, margin=1.0)
    >>> round(float(loss[0]), 4), numpy.round(grad, 4).tolist()
    (0.1667, [[-0.3333, 0.3333, 0.0]])
    """
    x = scores
    scale = 1.0 / divisor
    n, c = x.shape
    c = max(c, 1)  # (0, 0) guesses: nothing to divide
    clip = clip_function(xp)
    # By row blocks (each row's maths sees its whole row: the bits of one block), the gradient
    # written in place and the temporaries in 2 scratch arrays (SPEC section 8's memory bound).
    work = xp.empty(x.shape, dtype=x.dtype)  # the gradient, or without one scratch of its shape
    per_example = xp.empty((n,), dtype=x.dtype)
    for rows, scratch in scratch_blocks(xp, work, 2):
        xb, gold = x[rows], labels[rows]
        w = None if weights is None else weights[rows]
        at = xp.arange(xb.shape[0], dtype="int32")  # rows of one block (int64 would cost 1% of the gradient)
        # x + (margin - x_y): the column spread into scratch 1 first (numpy buffers a broadcast
        # operand, up to 8192 elements: 4% of the gradient at 4096x50; an assignment does not)
        shift = scratch[1]
        shift[...] = (margin - xb[at, gold])[:, None]
        slack = xp.add(xb, shift, out=work[rows])
        slack[at, gold] = 0.0  # the gold class has no term
        active = clip(slack, 0.0, math.inf, out=scratch[0])  # faster than maximum in numpy
        terms = xp.multiply(active, active, out=scratch[1]) if p == 2 else active  # p = 1: active is not needed again
        if w is not None:
            terms *= w
        xp.divide(terms.sum(axis=1), c, out=per_example[rows])
        if not want_grad:
            continue
        if p == 2:
            grad = xp.multiply(active, 2.0, out=slack)
        else:  # [slack > 0] as 1.0 / 0.0 (the bits of the bools cast), the bools in the free scratch 1
            above = scratch[1].reshape(-1).view(xp.bool_)[: slack.size].reshape(slack.shape)
            xp.greater(slack, 0, out=above)
            grad = slack
            grad[...] = above
        if w is None:
            grad *= scale / c
        else:
            grad *= xp.multiply(w, scale / c, out=scratch[1] if w.shape == grad.shape else None)
        grad[at, gold] = -grad.sum(axis=1)
    return (work if want_grad else None), per_example
