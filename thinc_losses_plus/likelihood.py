"""Regression losses that are negative log-likelihoods: Poisson and Gaussian.

As the other regression losses (:mod:`thinc_losses_plus.regression`), each
row is an example whose loss is summed over its columns, and ``normalize``
divides by the number of rows N (PyTorch's ``reduction="sum"`` / N).
"""
import math
from typing import Optional, Tuple

import numpy
from thinc.backends import get_array_ops

from ._checks import call_error, check_bool, check_float
from ._core import LossCalculator
from ._inputs import as_compute_dtype, float_array, restore_dtype
from ._regression_inputs import (
    Array,
    Result,
    check_loss_finite,
    finish_elementwise,
    float_guesses,
    regression_inputs,
    row_sum,
    scale_grad,
)

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def check_non_negative(name: str, arg: str, x: Array, what: str) -> None:
    if x.size and bool(x.min() < 0):
        raise call_error(name, arg, f"must be non-negative ({what}), got a minimum of {float(x.min())!r}")


# Maths --------------------------------------------------------------------


def stirling_term(t: Array) -> Array:
    """``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``, else 0 (PyTorch's ``full``)."""
    xp = get_array_ops(t).xp
    ts = xp.maximum(t, 1.0)
    term = ts * xp.log(ts) - ts + 0.5 * xp.log((2.0 * math.pi) * ts)
    term *= t > 1
    return term


def poisson_nll_log_rate(x: Array, t: Array, full: bool, weights, divisor: float, want_grad: bool) -> Result:
    """Guesses are log-rates: ``exp(x) - t x``; gradient ``exp(x) - t``."""
    xp = get_array_ops(x).xp
    loss = xp.exp(x)
    grad = loss - t if want_grad else None
    loss -= t * x
    if full:
        loss += stirling_term(t)
    return finish_elementwise(loss, grad, weights, divisor)


def poisson_nll_rate(x: Array, t: Array, eps: float, full: bool, weights, divisor: float, want_grad: bool) -> Result:
    """Guesses are rates: ``x - t log(x + eps)``; gradient ``1 - t / (x + eps)``."""
    xp = get_array_ops(x).xp
    shifted = x + eps
    grad = None
    if want_grad:
        grad = t / shifted
        grad = xp.subtract(1.0, grad, out=grad)
    loss = x - t * xp.log(shifted, out=shifted)
    if full:
        loss += stirling_term(t)
    return finish_elementwise(loss, grad, weights, divisor)


def gaussian_nll(
    mean: Array, var: Array, t: Array, eps: float, full: bool, weights, divisor: float, want_grad: bool
) -> Tuple[Optional[Tuple[Array, Array]], Array]:
    """``0.5 (log v + (mean - t)^2 / v)`` (+ ``0.5 log 2 pi``), ``v = max(var, eps)``.

    ``var`` has the mean's shape or one column (broadcast over the columns).
    Gradients: ``(mean - t) / v`` and ``0.5 (1 / v - (mean - t)^2 / v^2)``
    summed over the columns the variance is shared by, evaluated at the
    clamped ``v`` and passed straight through the clamp (PyTorch clamps
    under ``no_grad``).
    """
    xp = get_array_ops(mean).xp
    v = xp.maximum(var, eps)
    inv = 1.0 / v
    r = mean - t
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


# Calculators --------------------------------------------------------------


class PoissonNLL(LossCalculator):
    """Poisson negative log-likelihood of counts ``t`` given rates.

    With rates ``r = g`` (``from_logits=False``, the default; guesses must
    be >= 0): ``loss_i = sum_c r_ic - t_ic log(r_ic + eps)``, gradient
    ``1 - t / (g + eps)``. With log-rates ``g = log r`` (``from_logits=True``,
    PyTorch's default ``log_input=True``): ``loss_i = sum_c exp(g_ic) -
    t_ic g_ic``, gradient ``exp(g) - t``. Gradients are taken with respect to
    the guesses. ``full`` adds Stirling's approximation of ``log(t!)``,
    ``t log t - t + 0.5 log(2 pi t)`` for ``t > 1`` (PyTorch); it does not
    depend on the guesses.

    Shapes: guesses ``(N, C)`` or ``(N,)`` floats; truths the same shape,
    non-negative (float or int).

    Args:
        normalize: divide the loss and the gradient by N (rows).
        from_logits: guesses are log-rates (PyTorch ``log_input``).
        full: add the Stirling term.
        eps: added to the rates inside the log (``from_logits=False``); > 0.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import PoissonNLL
        >>> rates = numpy.asarray([[1.0, 2.0]])
        >>> counts = numpy.asarray([[1.0, 0.0]])
        >>> grad, loss = PoissonNLL()(rates, counts)
        >>> round(loss, 6)  # 1 - log(1) + 2 - 0
        3.0
        >>> numpy.round(grad, 6).tolist()
        [[0.0, 1.0]]

    Config::

        [loss]
        @losses = "PoissonNLL.v1"
        from_logits = false
        full = false
        eps = 0.00000001

    References:
        PyTorch ``torch.nn.PoissonNLLLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.PoissonNLLLoss.html;
        Keras ``keras.losses.Poisson``.
    """

    name = "PoissonNLL"

    def __init__(self, *, normalize: bool = True, from_logits: bool = False, full: bool = False, eps: float = 1e-8):
        super().__init__(normalize=normalize)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.full = check_bool(self.name, "full", full)
        self.eps = check_float(self.name, "eps", eps, low=0.0, low_open=True, high=math.inf, high_open=True)

    def count_examples(self, guesses) -> int:
        return float_guesses(self.name, "guesses", guesses).shape[0]

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        xp, g, t, weights = regression_inputs(self.name, guesses, truths, sample_weight)
        if not self.from_logits:
            check_non_negative(self.name, "guesses", g, "rates; use from_logits=True for log-rates")
        check_non_negative(self.name, "truths", t, "Poisson counts")
        with numpy.errstate(all="ignore"):  # non-finite results are diagnosed below
            if self.from_logits:
                grad, per_example = poisson_nll_log_rate(g, t, self.full, weights, divisor, want_grad)
            else:
                grad, per_example = poisson_nll_rate(g, t, self.eps, self.full, weights, divisor, want_grad)
        check_loss_finite(self.name, per_example, (("guesses", g), ("truths", t)))
        return restore_dtype(grad, guesses), per_example


class GaussianNLL(LossCalculator):
    """Gaussian negative log-likelihood of ``t`` given a mean and a variance.

    Guesses are a tuple ``(mean, var)``; with ``v = max(var, eps)``:
    ``loss_i = sum_c 0.5 * (log v_ic + (mean_ic - t_ic)^2 / v_ic)``, plus
    ``0.5 log(2 pi)`` per element when ``full``. The gradient is the tuple
    ``(d_mean, d_var)`` with respect to the mean and the variance:
    ``(mean - t) / v`` and ``0.5 (1 / v - (mean - t)^2 / v^2)`` (summed over
    the columns when the variance is shared by a row). As PyTorch, the clamp
    is not differentiated: below ``eps`` the loss no longer depends on
    ``var`` but ``d_var`` is still the derivative at ``v = eps`` (so training
    keeps pushing the variance where it should go).

    Shapes: mean ``(N, C)`` or ``(N,)`` floats; var the mean's shape, or
    ``(N, 1)`` / ``(N,)`` for one variance per row (homoscedastic); truths
    the mean's shape. Variances must be >= 0.

    Args:
        normalize: divide the loss and the gradients by N (rows).
        full: add the constant ``0.5 log(2 pi)`` per element.
        eps: the smallest variance used (a clamp, as PyTorch); > 0.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import GaussianNLL
        >>> mean = numpy.asarray([[1.0, 3.0]])
        >>> var = numpy.asarray([[1.0]])
        >>> truths = numpy.asarray([[0.0, 1.0]])
        >>> (d_mean, d_var), loss = GaussianNLL()((mean, var), truths)
        >>> round(loss, 6)  # 0.5 * (0 + 1) + 0.5 * (0 + 4)
        2.5
        >>> d_mean.tolist(), d_var.tolist()  # d_var = 0.5 * (1 - 1) + 0.5 * (1 - 4)
        ([[1.0, 2.0]], [[-1.5]])

    Config::

        [loss]
        @losses = "GaussianNLL.v1"
        full = false
        eps = 0.000001

    References:
        Nix and Weigend, "Estimating the mean and variance of the target
        probability distribution", 1994, https://doi.org/10.1109/ICNN.1994.374138.
        PyTorch ``torch.nn.GaussianNLLLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.GaussianNLLLoss.html;
        theanets ``GaussianLogLikelihood``.
    """

    name = "GaussianNLL"

    def __init__(self, *, normalize: bool = True, full: bool = False, eps: float = 1e-6):
        super().__init__(normalize=normalize)
        self.full = check_bool(self.name, "full", full)
        self.eps = check_float(self.name, "eps", eps, low=0.0, low_open=True, high=math.inf, high_open=True)

    def split(self, guesses) -> Tuple[Array, Array]:
        """Check and return the ``(mean, var)`` of the guesses."""
        if not isinstance(guesses, tuple) or len(guesses) != 2:
            got = f"a tuple of {len(guesses)}" if isinstance(guesses, tuple) else type(guesses).__name__
            raise call_error(self.name, "guesses", f"must be a tuple (mean, var), got {got}", TypeError)
        mean, var = guesses
        float_guesses(self.name, "guesses[0]", mean)
        float_array(self.name, "guesses[1]", var)
        return mean, var

    def count_examples(self, guesses) -> int:
        return self.split(guesses)[0].shape[0]

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        mean, var = self.split(guesses)
        n = mean.shape[0]
        shared = (n,) if mean.ndim == 1 else (n, 1)
        if tuple(var.shape) not in (tuple(mean.shape), shared, (n,)):
            raise call_error(
                self.name,
                "guesses[1]",
                f"(the variance) must have shape {tuple(mean.shape)} or {shared}, got {tuple(var.shape)}",
            )
        xp, m, t, weights = regression_inputs(self.name, mean, truths, sample_weight)
        v = as_compute_dtype(var).astype(m.dtype, copy=False)
        if v.ndim < m.ndim:
            v = v.reshape(shared)
        check_non_negative(self.name, "guesses[1]", v, "a variance")
        with numpy.errstate(all="ignore"):  # non-finite results are diagnosed below
            grads, per_example = gaussian_nll(m, v, t, self.eps, self.full, weights, divisor, want_grad)
        check_loss_finite(self.name, per_example, (("guesses[0]", m), ("guesses[1]", v), ("truths", t)))
        if grads is None:
            return None, per_example
        d_mean, d_var = grads
        return (restore_dtype(d_mean, mean), restore_dtype(d_var.reshape(var.shape), var)), per_example
