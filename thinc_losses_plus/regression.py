"""Regression losses: a penalty on the difference ``d = guesses - truths``.

Every loss here is a sum over the columns of a row of an elementwise
penalty ``f(d)``; the row is the example. ``normalize`` divides the loss and
the gradient by the number of rows N, so the normalised loss is PyTorch's
``reduction="sum"`` divided by N (PyTorch's default ``"mean"`` divides by
N * C instead). The gradient is the exact derivative ``f'(d)`` with respect
to the guesses (a subgradient where ``f`` has a kink).

Guesses are float arrays of shape ``(N, C)`` or ``(N,)`` (one value per
example); truths are numbers of the same shape (float or int arrays, or
nested lists); see :mod:`thinc_losses_plus._regression_inputs` for the checks.

The maths functions take the difference ``d`` (a fresh array they may
overwrite), the weights (``None`` or broadcastable to ``d``) and the divisor,
and return ``(gradient / divisor or None, per-example losses)``.
"""
import math

import numpy
from thinc.backends import get_array_ops

from ._checks import check_float
from ._core import LossCalculator
from ._inputs import restore_dtype
from ._regression_inputs import (
    Array,
    Result,
    check_loss_finite,
    finish_elementwise,
    float_guesses,
    regression_inputs,
    row_dot,
    row_sum,
    scale_grad,
)

#: Beyond this |d|, log(cosh(d)) = log(cosh(20)) + (|d| - 20) to within 5e-18.
LOGCOSH_LINEAR = 20.0


# Maths --------------------------------------------------------------------


def half_squared_error(d: Array, weights, divisor: float, want_grad: bool) -> Result:
    """``0.5 * d**2`` per element; gradient ``d``."""
    per_example = 0.5 * row_dot(d, d, weights)
    grad = scale_grad(d, weights, divisor) if want_grad else None
    return grad, per_example


def absolute_error(d: Array, weights, divisor: float, want_grad: bool) -> Result:
    """``|d|`` per element; subgradient ``sign(d)`` (0 at d = 0)."""
    xp = get_array_ops(d).xp
    grad = xp.sign(d) if want_grad else None
    return finish_elementwise(xp.abs(d, out=d), grad, weights, divisor)


def _excess(d: Array, width: float) -> Array:
    """``max(|d| - width, 0)``, overwriting ``d``."""
    xp = get_array_ops(d).xp
    excess = xp.abs(d, out=d)
    excess -= width
    return xp.clip(excess, 0.0, math.inf, out=excess)


def huber_error(d: Array, delta: float, weights, divisor: float, want_grad: bool) -> Result:
    """``0.5 d^2`` if ``|d| < delta`` else ``delta (|d| - delta/2)``; gradient ``clip(d, -delta, delta)``.

    Computed without branches as ``0.5 c^2 + delta max(|d| - delta, 0)``, ``c = clip(d, -delta, delta)``.
    """
    xp = get_array_ops(d).xp
    # A delta beyond the dtype's range clips nothing and leaves no excess: cap it (exact).
    delta = min(delta, float(numpy.finfo(d.dtype).max))
    c = xp.clip(d, -delta, delta)
    per_example = 0.5 * row_dot(c, c, weights) + delta * row_sum(_excess(d, delta), weights)
    grad = scale_grad(c, weights, divisor) if want_grad else None
    return grad, per_example


def smooth_l1_error(d: Array, beta: float, weights, divisor: float, want_grad: bool) -> Result:
    """``0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - beta/2``; gradient ``u = clip(d, -beta, beta) / beta``.

    Computed as ``0.5 u clip(d, -beta, beta) + max(|d| - beta, 0)``; ``beta = 0`` (or
    a beta that is 0 in the dtype) is the absolute error.
    """
    if d.dtype.type(beta) == 0:
        return absolute_error(d, weights, divisor, want_grad)
    xp = get_array_ops(d).xp
    bound = min(beta, float(numpy.finfo(d.dtype).max))
    c = xp.clip(d, -bound, bound)
    u = c / beta  # 0 where beta is beyond the dtype's range, as the exact value rounds
    per_example = 0.5 * row_dot(u, c, weights) + row_sum(_excess(d, bound), weights)
    grad = scale_grad(u, weights, divisor) if want_grad else None
    return grad, per_example


def log_cosh_error(d: Array, weights, divisor: float, want_grad: bool) -> Result:
    """``log(cosh(d))`` per element, computed stably; gradient ``tanh(d)``.

    ``log(cosh(d)) = log1p(2 sinh(|d|/2)^2)``, exact to full relative
    precision as ``d -> 0`` (unlike ``|d| + log1p(exp(-2|d|)) - log 2``,
    which cancels there); beyond ``|d| = 20`` the function is linear to
    within 5e-18, so the sinh is evaluated at ``min(|d|, 20)`` (no overflow)
    and ``max(|d| - 20, 0)`` is added.
    """
    xp = get_array_ops(d).xp
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
    return finish_elementwise(loss, grad, weights, divisor)


# Calculators --------------------------------------------------------------


class _DifferenceLoss(LossCalculator):
    """A loss of ``d = guesses - truths``: validates, calls :meth:`penalty`."""

    def count_examples(self, guesses) -> int:
        return float_guesses(self.name, "guesses", guesses).shape[0]

    def penalty(self, d: Array, weights, divisor: float, want_grad: bool) -> Result:
        raise NotImplementedError

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        xp, g, t, weights = regression_inputs(self.name, guesses, truths, sample_weight)
        with numpy.errstate(all="ignore"):  # non-finite results are diagnosed below
            grad, per_example = self.penalty(g - t, weights, divisor, want_grad)
        check_loss_finite(self.name, per_example, (("guesses", g), ("truths", t)))
        return restore_dtype(grad, guesses), per_example


class L2Distance(_DifferenceLoss):
    """Half the squared error: ``loss_i = 0.5 * sum_c (g_ic - t_ic)^2``.

    Registered as ``L2Distance.v2``. The gradient, ``g - t`` (divided by N
    when ``normalize``), is taken with respect to the guesses and is bit for
    bit the gradient of Thinc's ``L2Distance.v1``; unlike v1, whose reported
    loss is ``sum(grad^2)``, the loss returned here is the one whose
    derivative that gradient is (PyTorch ``mse_loss(reduction="sum") / 2``).

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).

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

    def penalty(self, d, weights, divisor, want_grad):
        return half_squared_error(d, weights, divisor, want_grad)


class L1Distance(_DifferenceLoss):
    """Absolute error: ``loss_i = sum_c |g_ic - t_ic|``.

    The gradient with respect to the guesses is the subgradient
    ``sign(g - t)``, which is 0 where ``g == t`` (as PyTorch's ``l1_loss``).

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).

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

    def penalty(self, d, weights, divisor, want_grad):
        return absolute_error(d, weights, divisor, want_grad)


class Huber(_DifferenceLoss):
    """Huber loss: with ``d = g - t``, ``loss_i = sum_c h(d_ic)`` where
    ``h(d) = 0.5 d^2`` if ``|d| < delta`` and ``delta (|d| - 0.5 delta)``
    otherwise: quadratic near 0, linear (slope ``delta``) in the tails.

    The gradient with respect to the guesses is ``clip(d, -delta, delta)``.
    ``Huber(delta) = delta * SmoothL1(beta=delta)``.

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).
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

    def __init__(self, *, normalize: bool = True, delta: float = 1.0):
        super().__init__(normalize=normalize)
        self.delta = check_float(self.name, "delta", delta, low=0.0, low_open=True, high=math.inf, high_open=True)

    def penalty(self, d, weights, divisor, want_grad):
        return huber_error(d, self.delta, weights, divisor, want_grad)


class SmoothL1(_DifferenceLoss):
    """Smooth L1 loss: with ``d = g - t``, ``loss_i = sum_c s(d_ic)`` where
    ``s(d) = 0.5 d^2 / beta`` if ``|d| < beta`` and ``|d| - 0.5 beta``
    otherwise (``beta = 0`` is the absolute error).

    The gradient with respect to the guesses is ``clip(d / beta, -1, 1)``
    (``sign(d)`` when ``beta = 0``). This is Gluon's ``HuberLoss(rho=beta)``.

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).
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

    def __init__(self, *, normalize: bool = True, beta: float = 1.0):
        super().__init__(normalize=normalize)
        self.beta = check_float(self.name, "beta", beta, low=0.0, high=math.inf, high_open=True)

    def penalty(self, d, weights, divisor, want_grad):
        return smooth_l1_error(d, self.beta, weights, divisor, want_grad)


class LogCosh(_DifferenceLoss):
    """Log-cosh loss: ``loss_i = sum_c log(cosh(g_ic - t_ic))``.

    About ``d^2 / 2`` for small ``d`` and ``|d| - log 2`` for large ``d``.
    Computed without overflow (|d| = 1e4 is fine) and with full relative
    precision near 0. The gradient with respect to the guesses is
    ``tanh(g - t)``.

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape.

    Args:
        normalize: divide the loss and the gradient by N (rows).

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

    def penalty(self, d, weights, divisor, want_grad):
        return log_cosh_error(d, weights, divisor, want_grad)
