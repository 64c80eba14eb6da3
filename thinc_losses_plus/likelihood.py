"""Regression losses that are negative log-likelihoods: Poisson and Gaussian.

As the other regression losses (:mod:`thinc_losses_plus.regression`), each
row is an example whose loss is summed over its columns, ``normalize``
divides by the number of rows N (PyTorch's ``reduction="sum"`` / N), and
all checks of a call, the per-example losses' included, make one transfer.
Besides the loss, the gradients are checked where they can overflow while
the loss does not (Poisson rates near 0 with large counts, Gaussian
variances small for their residuals).
"""
import math
from typing import Tuple

import numpy

from ._checks import call_error, check_bool, check_float
from ._inputs import as_compute_dtype, float_guesses
from .functional import regression as F
from .regression import (
    Array,
    RegressionLoss,
    check_finite_grad,
    check_finite_loss,
    check_non_negative,
    restore_guess_dtype,
)


class PoissonNLL(RegressionLoss):
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
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
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

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", from_logits: bool = False, full: bool = False, eps: float = 1e-8):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.full = check_bool(self.name, "full", full)
        self.eps = check_float(self.name, "eps", eps, low=0.0, low_open=True, high=math.inf, high_open=True)

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor, want_grad, want_terms=False):
        xp, g, t, weights, checks = self.inputs(guesses, truths, sample_weight)
        if not self.from_logits:
            check_non_negative(checks, "guesses", g, "rates; use from_logits=True for log-rates")
        check_non_negative(checks, "truths", t, "Poisson counts")
        with numpy.errstate(all="ignore"):  # non-finite results are diagnosed by the checks
            grad, per_example = F.poisson_nll(
                xp, g, t, from_logits=self.from_logits, full=self.full, eps=self.eps, weights=weights,
                divisor=divisor, want_grad=want_grad, terms=xp.empty_like(g) if want_terms else None,
            )
        check_finite_loss(checks, per_example, (("guesses", g), ("truths", t)))
        if want_grad and not self.from_logits:
            check_finite_grad(checks, "guesses", grad, "rates too close to 0 for their counts (raise eps)")
        checks.run()
        return (grad if want_terms else restore_guess_dtype(grad, guesses)), per_example


class GaussianNLL(RegressionLoss):
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
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
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

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", full: bool = False, eps: float = 1e-6):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.full = check_bool(self.name, "full", full)
        self.eps = check_float(self.name, "eps", eps, low=0.0, low_open=True, high=math.inf, high_open=True)

    def split(self, guesses) -> Tuple[Array, Array]:
        """Check and return the ``(mean, var)`` of the guesses."""
        if not isinstance(guesses, tuple) or len(guesses) != 2:
            got = f"a tuple of {len(guesses)}" if isinstance(guesses, tuple) else type(guesses).__name__
            raise call_error(self.name, "guesses", f"must be a tuple (mean, var), got {got}", TypeError)
        return guesses

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor, want_grad, want_terms=False):
        mean, var = self.split(guesses)
        xp, m, t, weights, checks = self.inputs(mean, truths, sample_weight, arg="guesses[0]")
        n = m.shape[0]
        v = float_guesses(self.name, "guesses[1]", var)
        shared = (n, 1)
        if tuple(v.shape) not in (tuple(m.shape), shared, (n,)):
            allowed = f"{tuple(m.shape)} or {shared}" if m.ndim == 2 else f"{(n,)} or {shared}"
            raise call_error(
                self.name, "guesses[1]", f"(the variance) must have shape {allowed}, got {tuple(v.shape)}"
            )
        v = as_compute_dtype(v.astype(m.dtype, copy=False))
        if v.shape != m.shape:  # one variance per row
            v = v.reshape(m.shape[:1] + (1,) * (m.ndim - 1))
        check_non_negative(checks, "guesses[1]", v, "a variance")
        with numpy.errstate(all="ignore"):  # non-finite results are diagnosed by the checks
            grads, per_example = F.gaussian_nll(
                xp, (m, v), t, full=self.full, eps=self.eps, weights=weights, divisor=divisor, want_grad=want_grad,
                terms=xp.empty_like(m) if want_terms else None,
            )
        check_finite_loss(checks, per_example, (("guesses[0]", m), ("guesses[1]", v), ("truths", t)))
        if want_grad:
            check_finite_grad(checks, "guesses[1]", grads[1], "variances too small for their residuals")
        checks.run()
        if not want_grad:
            return grads, per_example  # None, or the terms
        d_mean, d_var = grads
        return (restore_guess_dtype(d_mean, mean), restore_guess_dtype(d_var.reshape(var.shape), var)), per_example
