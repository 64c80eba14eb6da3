"""Kernel two-sample loss: maximum mean discrepancy (MMD) with RBF kernels.

The guesses (N, D) and the truths (M, D) are two *samples*: the loss says
how far apart their distributions are, not how far row i of one is from
row i of the other. Its gradient is taken with respect to the guesses only.
"""
import math
from numbers import Real
from typing import Any, List, Optional, Sequence, Tuple, Union

from thinc.backends import get_array_ops

from ._checks import call_error, check_float, setting_error
from ._core import LossCalculator
from ._inputs import restore_dtype
from .embedding import float_rows, row_scale

Array = Any


def squared_distances(x: Array, y: Array) -> Array:
    """``||x_i - y_j||^2`` for every pair of rows, ``(N, M)``, clipped at 0.

    When ``y is x`` the diagonal is exactly 0.
    """
    xp = get_array_ops(x).xp
    xx = xp.einsum("ij,ij->i", x, x)
    yy = xp.einsum("ij,ij->i", y, y)
    d = xx[:, None] + yy[None, :] - 2.0 * (x @ y.T)
    xp.maximum(d, 0.0, out=d)
    if x is y:  # a point's distance to itself is 0, not the expansion's rounding error
        d.reshape(-1)[:: d.shape[0] + 1] = 0.0
    return d


def rbf_kernels(sq: Array, bandwidths: Sequence[float]) -> Tuple[Array, Array]:
    """``K = sum_s exp(-sq / b_s)`` and ``dK/dsq = -sum_s exp(-sq / b_s) / b_s``."""
    xp = get_array_ops(sq).xp
    k = xp.zeros_like(sq)
    dk = xp.zeros_like(sq)
    for b in bandwidths:
        e = xp.exp(sq * (-1.0 / b))
        k += e
        dk -= e * (1.0 / b)
    return k, dk


def rbf_mmd_per_example(
    x: Array, y: Array, *, bandwidths: Sequence[float], weights: Optional[Array], want_grad: bool
) -> Tuple[Optional[Array], Array]:
    """Each guesses-row's share of the biased MMD^2, times N, and the gradient of their weighted sum.

    ``per_example_i = mean_j k(x_i, x_j) - 2 mean_a k(x_i, y_a) + mean_ab k(y_a, y_b)``,
    whose mean over i is the biased (V-statistic) estimate of MMD^2. With
    weights ``w``, the loss ``sum_i w_i per_example_i`` has gradient
    ``dL/dx_k = 2 sum_j (w_k + w_j)/N dK_kj/dsq (x_k - x_j) - 4 w_k/M sum_a dK_ka/dsq (x_k - y_a)``.
    """
    n, m = x.shape[0], y.shape[0]
    # Distances and the gradient's differences do not change under a shift:
    # centring on the truths' mean keeps |x|^2 + |y|^2 - 2 x.y from cancelling
    # when the samples sit far from the origin.
    centre = y.mean(axis=0)
    x, y = x - centre, y - centre
    kxx, dxx = rbf_kernels(squared_distances(x, x), bandwidths)
    kxy, dxy = rbf_kernels(squared_distances(x, y), bandwidths)
    kyy, _ = rbf_kernels(squared_distances(y, y), bandwidths)
    per_example = kxx.mean(axis=1) - 2.0 * kxy.mean(axis=1) + kyy.mean()
    grad = None
    if want_grad:
        if weights is None:
            a = dxx * (4.0 / n)
            b = dxy * (4.0 / m)
        else:
            a = dxx * ((weights[:, None] + weights[None, :]) * (2.0 / n))
            b = dxy * (weights[:, None] * (4.0 / m))
        # sum_j A_kj (x_k - x_j) = rowsum(A)_k x_k - (A @ x)_k
        grad = a.sum(axis=1)[:, None] * x - a @ x
        grad -= b.sum(axis=1)[:, None] * x - b @ y
    if weights is not None:
        per_example = per_example * weights
    return grad, per_example


def check_bandwidths(name: str, value: Any) -> Union[float, List[float]]:
    """One positive, finite bandwidth, or a non-empty list of them."""
    options = dict(low=0.0, low_open=True, high=math.inf, high_open=True)
    if isinstance(value, Real) and not isinstance(value, bool):
        return check_float(name, "bandwidth", value, **options)
    if isinstance(value, (list, tuple)) and value:
        return [check_float(name, "bandwidth", b, **options) for b in value]
    raise setting_error(name, "bandwidth", f"must be a number or a non-empty list of numbers, got {value!r}", TypeError)


class MaximumMeanDiscrepancy(LossCalculator):
    """Maximum mean discrepancy between the guesses' and the truths' samples, RBF kernel.

    With ``k(x, y) = sum_s exp(-||x - y||^2 / bandwidth_s)`` (theanets'
    Gaussian kernel, whose bandwidth divides the squared distance; a list of
    bandwidths sums one kernel per bandwidth), the loss is the *biased*
    (V-statistic) estimate

        MMD^2 = mean_ij k(x_i, x_j) - 2 mean_ia k(x_i, y_a) + mean_ab k(y_a, y_b)

    over the N guesses rows ``x`` and M truths rows ``y`` (diagonal terms
    included, as theanets and Li et al.). It is never negative.

    Per example: ``get_loss_per_example`` returns, for each guesses row i,
    ``mean_j k(x_i, x_j) - 2 mean_a k(x_i, y_a) + mean_ab k(y_a, y_b)``;
    their mean is MMD^2. So with ``normalize`` (the default) the loss is
    MMD^2 itself and ``normalize=False`` gives N * MMD^2 (their sum), with
    the gradient scaled alike. ``sample_weight`` ((N,) or (N, 1)) weights
    these per-row terms; the gradient is then that of the weighted sum
    (each row's term depends on every guesses row).

    The gradient is the exact derivative with respect to the guesses
    (the truths are a fixed sample).

    Shapes: guesses ``(N, D)``, truths ``(M, D)`` floats; M may differ from
    N but must be > 0 when N > 0.

    Args:
        normalize: report MMD^2 (True) or N * MMD^2 (False).
        bandwidth: the kernel bandwidth (> 0), or a list of them (multi-kernel sum).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import MaximumMeanDiscrepancy
        >>> x = numpy.asarray([[0.0], [1.0]])
        >>> y = numpy.asarray([[0.0], [2.0], [4.0]])
        >>> grad, loss = MaximumMeanDiscrepancy(bandwidth=1.0)(x, y)
        >>> round(loss, 6)
        0.440681
        >>> grad.round(6).tolist()
        [[0.343458], [-0.368126]]

    Config::

        [loss]
        @losses = "MaximumMeanDiscrepancy.v1"
        bandwidth = [0.5, 1.0, 4.0]

    References:
        Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.
        Li, Swersky & Zemel, "Generative Moment Matching Networks", ICML 2015.
        theanets ``MaximumMeanDiscrepancy``.
    """

    name = "MaximumMeanDiscrepancy"

    def __init__(self, *, normalize: bool = True, bandwidth: Union[float, List[float]] = 1.0):
        super().__init__(normalize=normalize)
        self.bandwidth = check_bandwidths(self.name, bandwidth)

    @property
    def bandwidths(self) -> List[float]:
        return self.bandwidth if isinstance(self.bandwidth, list) else [self.bandwidth]

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        x = float_rows(self.name, "guesses", guesses)
        y = float_rows(self.name, "truths", truths)
        xp, n = get_array_ops(x).xp, x.shape[0]
        if y.shape[1] != x.shape[1]:
            raise call_error(
                self.name, "truths", f"must have {x.shape[1]} columns (as the guesses), got shape {tuple(y.shape)}"
            )
        if n and not y.shape[0]:
            raise call_error(self.name, "truths", "must have at least one row (the sample to match)")
        y = xp.asarray(y, dtype=x.dtype)
        weights, _ = row_scale(self.name, sample_weight, n, xp, x.dtype, divisor)
        if n == 0:
            return (restore_dtype(xp.zeros_like(x), guesses) if want_grad else None), xp.zeros((0,), dtype=x.dtype)
        grad, per_example = rbf_mmd_per_example(
            x, y, bandwidths=self.bandwidths, weights=weights, want_grad=want_grad
        )
        if grad is not None and divisor != 1:
            grad /= divisor
        return restore_dtype(grad, guesses), per_example
