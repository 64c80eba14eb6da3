"""Regression losses: a penalty on the difference ``d = guesses - truths``.

Every loss here is a sum over the columns of a row of an elementwise
penalty ``f(d)``; the row is the example. ``normalize`` divides the loss and
the gradient by the number of rows N, so the normalised loss is PyTorch's
``reduction="sum"`` divided by N (PyTorch's default ``"mean"`` divides by
N * C instead). The gradient is the exact derivative ``f'(d)`` with respect
to the guesses (a subgradient where ``f`` has a kink).

Guesses are float arrays of shape ``(N, C)`` or ``(N,)`` (one value per
example); truths are numbers of the same shape (float, int or bool arrays,
or nested lists). ``sample_weight`` is ``(N,)``, ``(N, 1)`` or the guesses'
shape. The maths is in :mod:`thinc_losses_plus.functional.regression`.

Checks: a NaN or infinite input always makes the loss non-finite, so the
inputs are not scanned up front; one reduction over the N per-example
losses, folded with the other checks of the call (sample weights, value
ranges) into one :class:`~thinc_losses_plus._inputs.Checks`, tells whether
anything is wrong, and only then are the inputs diagnosed. A loss too large
for the dtype (0.5 * (1e20)^2 in float32) is refused with an error rather
than returned as inf.
"""
import math
from typing import Any, Tuple

import numpy

from ._checks import check_float
from ._core import LossCalculator
from ._inputs import (
    Checks,
    array_module,
    finite_problem,
    float_guesses,
    is_array,
    numeric_truths,
    prepare_sample_weight,
    restore_dtype,
)
from .functional import regression as F
from .functional.blocks import OnePassElements

Array = Any


# Checks ---------------------------------------------------------------------


def check_finite_loss(checks: Checks, per_example: Array, inputs: Tuple[Tuple[str, Array], ...]) -> None:
    """Register with ``checks``: the per-example losses are finite.

    One float64 sum over the N losses; after a failure, the first
    non-finite input is named, or else the loss overflowed the dtype.
    """
    if not per_example.size:
        return
    xp = checks.xp
    bad = ~xp.isfinite(per_example.sum(dtype=xp.float64))
    for arg, x in inputs:
        checks.fail_if(bad, arg, lambda x=x: finite_problem(x))
    hint = "they are too far from the truths"
    checks.fail_if(bad, "guesses", lambda: overflow_problem(xp, per_example, "a loss", hint))


def check_finite_grad(checks: Checks, arg: str, grad: Array, hint: str) -> None:
    """Register with ``checks``: a gradient whose loss is finite did not overflow (one sum)."""
    if grad is not None and grad.size:
        xp = checks.xp  # (the message must not hold ``checks``: a cycle would keep the arrays alive)
        checks.fail_if(~xp.isfinite(grad.sum()), arg, lambda: overflow_problem(xp, grad, "a gradient", hint))


def overflow_problem(xp, values: Array, what: str, hint: str):
    """The message for finite inputs whose results are not finite (None if they are, after all)."""
    if bool(xp.isfinite(values).all()):
        return None  # finite values whose sum overflows (the reported loss is then inf, honestly)
    return f"give {what} that overflows {values.dtype}: {hint}"


def restore_guess_dtype(grad: Array, like: Array) -> Array:
    """A gradient computed in float32 for float16 ``like``, cast back to float16 and saturated at
    float16's largest finite value (a float32 value beyond it would round to inf); other
    gradients are returned as they are. ``grad`` is the calculator's own buffer (clipped in place).
    """
    if grad is not None and grad.dtype != like.dtype and like.dtype.itemsize < 4:
        big = float(numpy.finfo(like.dtype).max)
        array_module(grad).clip(grad, -big, big, out=grad)
    return restore_dtype(grad, like)


def check_non_negative(checks: Checks, arg: str, x: Array, what: str) -> None:
    """Register with ``checks``: ``x`` has no negative entry (NaN is left to the loss check)."""
    if x.size:
        checks.fail_if(
            x.min() < 0, arg, lambda: f"must be non-negative ({what}), got a minimum of {float(x.min())!r}"
        )


# Calculators --------------------------------------------------------------


class RegressionLoss(OnePassElements, LossCalculator):
    """Base of the regression family: guesses ``(N, C)`` or ``(N,)``, truths of their shape."""

    elementwise = True  # one term per element: "elements" divides by N x C

    def count_examples(self, guesses) -> int:
        """The rows of the guesses (of the mean, for a ``(mean, var)`` tuple); :meth:`compute` checks them."""
        first = guesses[0] if isinstance(guesses, tuple) and guesses else guesses
        return int(first.shape[0]) if is_array(first) and first.ndim else 0

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        return self.elementwise_pass(guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad)

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor, want_grad, want_terms=False):
        """:meth:`compute`; with ``want_terms``, ``(terms, per_example)`` (:class:`OnePassElements`)."""
        raise NotImplementedError

    def inputs(self, guesses, truths, sample_weight, arg: str = "guesses"):
        """``(xp, guesses, truths, weights, checks)``: C-contiguous, in the compute dtype; one
        :class:`Checks` for the call, holding the sample weights' checks already."""
        g = float_guesses(self.name, arg, guesses)
        xp = array_module(g)
        t = numeric_truths(self.name, truths, xp, g.dtype, g.shape)
        checks = Checks(self.name, xp)
        weights = prepare_sample_weight(self.name, sample_weight, g.shape, xp, g.dtype, checks)
        return xp, g, t, weights, checks


class DifferenceLoss(RegressionLoss):
    """A loss of ``d = guesses - truths``: :meth:`penalty` is one call of the maths."""

    def penalty(self, xp, guesses, truths, *, weights, divisor, want_grad, terms):
        raise NotImplementedError

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor, want_grad, want_terms=False):
        xp, g, t, weights, checks = self.inputs(guesses, truths, sample_weight)
        terms = xp.empty_like(g) if want_terms else None
        with numpy.errstate(all="ignore"):  # non-finite results are diagnosed by the checks
            grad, per_example = self.penalty(
                xp, g, t, weights=weights, divisor=divisor, want_grad=want_grad, terms=terms
            )
        check_finite_loss(checks, per_example, (("guesses", g), ("truths", t)))
        checks.run()
        return (grad if want_terms else restore_guess_dtype(grad, guesses)), per_example


class L2Distance(DifferenceLoss):
    """Half the squared error: ``loss_i = 0.5 * sum_c (g_ic - t_ic)^2``.

    Registered as ``L2Distance.v2``. The gradient, ``g - t`` (divided by N
    when ``normalize``), is taken with respect to the guesses and is bit for
    bit the gradient of Thinc's ``L2Distance.v1``; unlike v1, whose reported
    loss is ``sum(grad^2)``, the loss returned here is the one whose
    derivative that gradient is (PyTorch ``mse_loss(reduction="sum") / 2``).

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import L2Distance
        >>> guesses = numpy.asarray([[1.0, 2.0], [0.0, 0.0]], dtype="float32")
        >>> truths = numpy.asarray([[0.0, 2.0], [1.0, -1.0]], dtype="float32")
        >>> grad, loss = L2Distance()(guesses, truths)
        >>> loss  # (0.5 * 1 + 0.5 * (1 + 1)) / 2
        0.75
        >>> grad.tolist()
        [[0.5, 0.0], [-0.5, 0.5]]

    Config::

        [loss]
        @losses = "L2Distance.v2"
        normalize = true

    References:
        PyTorch ``torch.nn.MSELoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.MSELoss.html
    """

    name = "L2Distance"

    def penalty(self, xp, guesses, truths, **reduction):
        return F.half_squared_error(xp, guesses, truths, **reduction)


class L1Distance(DifferenceLoss):
    """Absolute error: ``loss_i = sum_c |g_ic - t_ic|``.

    The gradient with respect to the guesses is the subgradient
    ``sign(g - t)``, which is 0 where ``g == t`` (as PyTorch's ``l1_loss``).

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import L1Distance
        >>> guesses = numpy.asarray([[1.0, 2.0], [0.0, 0.0]], dtype="float32")
        >>> truths = numpy.asarray([[0.0, 2.0], [1.0, -3.0]], dtype="float32")
        >>> grad, loss = L1Distance()(guesses, truths)
        >>> loss  # (1 + 0 + 1 + 3) / 2
        2.5
        >>> grad.tolist()
        [[0.5, 0.0], [-0.5, 0.5]]

    Config::

        [loss]
        @losses = "L1Distance.v1"
        normalize = true

    References:
        PyTorch ``torch.nn.L1Loss``:
        https://pytorch.org/docs/stable/generated/torch.nn.L1Loss.html
    """

    name = "L1Distance"

    def penalty(self, xp, guesses, truths, **reduction):
        return F.absolute_error(xp, guesses, truths, **reduction)


class Huber(DifferenceLoss):
    """Huber loss: with ``d = g - t``, ``loss_i = sum_c h(d_ic)`` where
    ``h(d) = 0.5 d^2`` if ``|d| < delta`` and ``delta (|d| - 0.5 delta)``
    otherwise: quadratic near 0, linear (slope ``delta``) in the tails.

    The gradient with respect to the guesses is ``clip(d, -delta, delta)``.
    ``Huber(delta) = delta * SmoothL1(beta=delta)``.

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        delta: where the quadratic part ends; > 0.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import Huber
        >>> guesses = numpy.asarray([[0.5, 3.0]], dtype="float32")
        >>> truths = numpy.zeros((1, 2), dtype="float32")
        >>> grad, loss = Huber(delta=1.0)(guesses, truths)
        >>> loss  # 0.5 * 0.25 + 1.0 * (3.0 - 0.5)
        2.625
        >>> grad.tolist()
        [[0.5, 1.0]]

    Config::

        [loss]
        @losses = "Huber.v1"
        delta = 1.0

    References:
        Huber, "Robust Estimation of a Location Parameter", 1964.
        PyTorch ``torch.nn.HuberLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.HuberLoss.html;
        Keras ``keras.losses.Huber``.
    """

    name = "Huber"

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", delta: float = 1.0):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.delta = check_float(self.name, "delta", delta, low=0.0, low_open=True, high=math.inf, high_open=True)

    def penalty(self, xp, guesses, truths, **reduction):
        return F.huber_error(xp, guesses, truths, delta=self.delta, **reduction)


class SmoothL1(DifferenceLoss):
    """Smooth L1 loss: with ``d = g - t``, ``loss_i = sum_c s(d_ic)`` where
    ``s(d) = 0.5 d^2 / beta`` if ``|d| < beta`` and ``|d| - 0.5 beta``
    otherwise (``beta = 0`` is the absolute error).

    The gradient with respect to the guesses is ``clip(d / beta, -1, 1)``
    (``sign(d)`` when ``beta = 0``). This is Gluon's ``HuberLoss(rho=beta)``.

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        beta: where the quadratic part ends; >= 0.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import SmoothL1
        >>> guesses = numpy.asarray([[0.5, 3.0]], dtype="float32")
        >>> truths = numpy.zeros((1, 2), dtype="float32")
        >>> grad, loss = SmoothL1(beta=2.0)(guesses, truths)
        >>> loss  # 0.5 * 0.25 / 2 + (3.0 - 1.0)
        2.0625
        >>> grad.tolist()
        [[0.25, 1.0]]

    Config::

        [loss]
        @losses = "SmoothL1.v1"
        beta = 1.0

    References:
        Girshick, "Fast R-CNN", 2015, https://arxiv.org/abs/1504.08083.
        PyTorch ``torch.nn.SmoothL1Loss``:
        https://pytorch.org/docs/stable/generated/torch.nn.SmoothL1Loss.html
    """

    name = "SmoothL1"

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", beta: float = 1.0):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.beta = check_float(self.name, "beta", beta, low=0.0, high=math.inf, high_open=True)

    def penalty(self, xp, guesses, truths, **reduction):
        return F.smooth_l1_error(xp, guesses, truths, beta=self.beta, **reduction)


class LogCosh(DifferenceLoss):
    """Log-cosh loss: ``loss_i = sum_c log(cosh(g_ic - t_ic))``.

    About ``d^2 / 2`` for small ``d`` and ``|d| - log 2`` for large ``d``.
    Computed without overflow (|d| = 1e4 is fine) and with full relative
    precision near 0. The gradient with respect to the guesses is
    ``tanh(g - t)``.

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import LogCosh
        >>> guesses = numpy.asarray([[0.0, 1e4]])
        >>> truths = numpy.zeros((1, 2))
        >>> grad, loss = LogCosh()(guesses, truths)
        >>> round(loss, 6)  # 0 + 1e4 - log(2)
        9999.306853
        >>> grad.tolist()
        [[0.0, 1.0]]

    Config::

        [loss]
        @losses = "LogCosh.v1"
        normalize = true

    References:
        Keras ``keras.losses.LogCosh``;
        Chen et al., "Log Hyperbolic Cosine Loss Improves Variational
        Auto-Encoder", 2019, https://openreview.net/forum?id=rkglvsC9Ym
    """

    name = "LogCosh"

    def penalty(self, xp, guesses, truths, **reduction):
        return F.log_cosh_error(xp, guesses, truths, **reduction)
