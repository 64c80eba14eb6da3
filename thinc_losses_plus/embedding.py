"""Embedding losses: cosine distance, cosine embedding (pairs), triplet margin, MMD.

An example is a row: guesses are ``(N, D)`` float arrays (or a tuple of
them: a pair, a triplet), and each row gives one loss (for the maximum mean
discrepancy, each guesses row's share of a distance between two samples).
``normalize`` divides the loss and the gradient by the number of rows N
(``CosineDistance`` with ``ignore_zeros`` divides by the rows it keeps).
``sample_weight`` is one weight per row, ``(N,)`` or ``(N, 1)``. Tuple
guesses give a tuple of gradients, each the exact derivative of the loss
with respect to that array.

Each call validates its inputs through :mod:`thinc_losses_plus._inputs`
with one :class:`~thinc_losses_plus._inputs.Checks`: the minimum and the
maximum of every array say at once whether it is finite and how large its
values are, and the largest magnitude (the one number brought back to the
host) tells the maths of :mod:`thinc_losses_plus.functional.embedding`
whether rows must be rescaled before their norms are taken (rows of 1e20
in float32 give finite, correct results).
"""
import math
from numbers import Real
from typing import Any, List, Tuple, Union

import numpy
from thinc.types import Ragged

from ._checks import call_error, check_bool, check_float, setting_error
from ._core import Evaluation, LossCalculator
from ._inputs import (
    Checks,
    array_module,
    check_same_shape,
    finite_problem,
    float_rows,
    guess_tuple,
    is_array,
    prepare_sample_weight,
    restore_dtype,
)
from .functional import embedding as F

Array = Any


# Inputs ----------------------------------------------------------------------


def finite_and_largest(checks: Checks, *named: Tuple[str, Array]) -> None:
    """Register with ``checks`` that each ``(arg, array)`` is finite, and request
    the largest magnitude of them all, from two reductions per array (min, max)."""
    xp = checks.xp
    tops = []
    for arg, x in named:
        if x.size:
            low, high = x.min(), x.max()
            checks.fail_if(~(xp.isfinite(low) & xp.isfinite(high)), arg, lambda x=x: finite_problem(x))
            tops.append(xp.maximum(high, -low))
    if tops:
        checks.request(xp.max(xp.stack([xp.asarray(v) for v in tops])))


def run_checks(checks: Checks) -> float:
    """Run the checks of one call; return the largest magnitude of the inputs (0.0 if empty)."""
    values = checks.run()
    return values[0] if values else 0.0


def row_weights(name: str, sample_weight: Any, n: int, xp, dtype, checks: Checks):
    """One weight per row, ``(N,)``, from ``(N,)`` or ``(N, 1)``; checked with the call's checks."""
    return prepare_sample_weight(name, sample_weight, (n,), xp, dtype, checks)


def signed_labels(name: str, truths: Any, n: int, xp, dtype, checks: Checks) -> Array:
    """Labels -1/1, one per row, as a C-contiguous ``(N,)`` array of ``dtype``."""
    if isinstance(truths, (list, tuple)):
        if not all(isinstance(y, Real) and not isinstance(y, (bool, numpy.bool_)) for y in truths):
            raise call_error(name, "truths", "must be a list of -1 and 1", TypeError)
        truths = numpy.asarray(truths, dtype=dtype)
    elif not is_array(truths):
        problem = f"must be an array or a list of -1 and 1, got {type(truths).__name__}"
        raise call_error(name, "truths", problem, TypeError)
    elif truths.dtype.kind not in "fiu":
        raise call_error(name, "truths", f"must hold -1 and 1, got dtype {truths.dtype}", TypeError)
    if truths.ndim == 2 and truths.shape[1] == 1:
        truths = truths.reshape(-1)
    if tuple(truths.shape) != (n,):
        raise call_error(name, "truths", f"must have shape ({n},) (one label per pair), got {tuple(truths.shape)}")
    try:
        y = xp.ascontiguousarray(xp.asarray(truths, dtype=dtype))
    except TypeError as err:  # a cupy array with numpy guesses
        raise call_error(name, "truths", f"must be on the guesses' device ({err})", TypeError) from None
    if n:
        checks.fail_if(
            ~((y == 1) | (y == -1)).all(), "truths", lambda: "must hold only -1 (dissimilar) and 1 (similar)"
        )
    return y


def restore_dtypes(grads, guesses):
    """A tuple of gradients, each in the dtype of its guesses array."""
    return None if grads is None else tuple(restore_dtype(g, x) for g, x in zip(grads, guesses))


# Calculators -----------------------------------------------------------------


class CosineDistance(LossCalculator):
    """Cosine distance: ``loss_i = 1 - g_i.t_i / (max(|g_i|, eps) * max(|t_i|, eps))``.

    Registered as ``CosineDistance.v2``. ``eps`` clamps each norm from below
    and touches nothing else (PyTorch's ``cosine_similarity``); Thinc's
    ``CosineDistance.v1`` instead adds 1e-8 to every element of both arrays,
    which shifts the cosine of any vector slightly. A zero row gives a cosine
    of 0 (loss 1) and a finite gradient. The gradient is the exact
    derivative with respect to the guesses (at a zero guess: ``-t / (|t| eps)``).

    With ``ignore_zeros``, rows whose truth is all zeros contribute nothing
    (loss and gradient 0) and do not count in N: ``normalize`` divides by
    the number of other rows (Thinc v1 divides by all rows).

    Shapes: guesses and truths ``(N, D)`` floats.

    Args:
        normalize: divide the loss and the gradient by N (kept rows).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        ignore_zeros: skip rows whose truth is all zeros.
        eps: lower bound of each norm; > 0.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import CosineDistance
        >>> guesses = numpy.asarray([[1.0, 0.0], [3.0, 4.0]])
        >>> truths = numpy.asarray([[0.0, 2.0], [0.0, 0.0]])
        >>> grad, loss = CosineDistance(ignore_zeros=True)(guesses, truths)
        >>> loss  # row 0: 1 - 0; row 1 is ignored and N = 1
        1.0
        >>> grad.tolist()
        [[0.0, -1.0], [0.0, 0.0]]

    Config::

        [loss]
        @losses = "CosineDistance.v2"
        ignore_zeros = false
        eps = 1e-8

    References:
        PyTorch ``torch.nn.functional.cosine_similarity``:
        https://pytorch.org/docs/stable/generated/torch.nn.functional.cosine_similarity.html
    """

    name = "CosineDistance"

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", ignore_zeros: bool = False, eps: float = 1e-8):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.ignore_zeros = check_bool(self.name, "ignore_zeros", ignore_zeros)
        self.eps = check_float(self.name, "eps", eps, low=0.0, low_open=True, high=math.inf, high_open=True)

    def evaluate(self, guesses, truths, *, sample_weight=None, want_grad: bool = True) -> Evaluation:
        """With ``ignore_zeros``, ``normalize`` divides by the number of rows
        whose truth is not all zeros: a device count, the divisor of every row."""
        if isinstance(guesses, Ragged):
            raise call_error(self.name, "guesses", "must not be a Ragged", TypeError)
        g = float_rows(self.name, "guesses", guesses)
        t = float_rows(self.name, "truths", truths).astype(g.dtype, copy=False)
        check_same_shape(self.name, "truths", t, g.shape)
        xp, n = array_module(g), g.shape[0]
        checks = Checks(self.name, xp)
        weights = row_weights(self.name, sample_weight, n, xp, g.dtype, checks)
        finite_and_largest(checks, ("guesses", g), ("truths", t))
        largest = run_checks(checks)
        keep = F.nonzero_rows(xp, t) if self.ignore_zeros else None
        divisor = 1
        if self.normalize and n:
            divisor = n if keep is None else xp.asarray(xp.maximum(keep.sum(dtype=g.dtype), 1))
        grad, per_example = F.cosine_distance(
            xp, g, t, eps=self.eps, mask=keep, largest=largest, weights=weights, divisor=divisor, want_grad=want_grad
        )
        return Evaluation(restore_dtype(grad, guesses), per_example, divisor)


class CosineEmbedding(LossCalculator):
    """Cosine embedding loss (PyTorch ``CosineEmbeddingLoss``): for a pair ``(x1_i, x2_i)``
    and a label ``y_i``, ``loss_i = 1 - cos_i`` if ``y_i = 1`` (pull together) and
    ``max(0, cos_i - margin)`` if ``y_i = -1`` (push apart), where
    ``cos_i = x1_i.x2_i / sqrt((|x1_i|^2 + 1e-12) (|x2_i|^2 + 1e-12))``, exactly as PyTorch.

    The gradient is a tuple ``(dL/dx1, dL/dx2)``, the exact derivative
    (0 for a dissimilar pair whose cosine is at most the margin).

    Shapes: guesses a tuple ``(x1, x2)`` of ``(N, D)`` floats; truths ``(N,)``
    labels, each -1 or 1 (an int or float array, or a list).

    Args:
        normalize: divide the loss and the gradients by N (pairs).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        margin: cosine below which a dissimilar pair costs nothing; in [-1, 1].

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import CosineEmbedding
        >>> x1 = numpy.asarray([[1.0, 0.0], [1.0, 0.0]])
        >>> x2 = numpy.asarray([[0.0, 1.0], [1.0, 1.0]])
        >>> (g1, g2), loss = CosineEmbedding(margin=0.5)((x1, x2), [1, -1])
        >>> round(loss, 6)  # ((1 - 0) + (0.707107 - 0.5)) / 2
        0.603553
        >>> g2.round(4).tolist()  # pair 0 pulls x2 towards x1; pair 1 pushes it away
        [[-0.5, 0.0], [0.1768, -0.1768]]

    Config::

        [loss]
        @losses = "CosineEmbedding.v1"
        margin = 0.0

    References:
        PyTorch ``torch.nn.CosineEmbeddingLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.CosineEmbeddingLoss.html
    """

    name = "CosineEmbedding"

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", margin: float = 0.0):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.margin = check_float(self.name, "margin", margin, low=-1.0, high=1.0)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        x1, x2 = guess_tuple(self.name, guesses, ("x1", "x2"))
        xp, n = array_module(x1), x1.shape[0]
        checks = Checks(self.name, xp)
        y = signed_labels(self.name, truths, n, xp, x1.dtype, checks)
        weights = row_weights(self.name, sample_weight, n, xp, x1.dtype, checks)
        finite_and_largest(checks, ("guesses[0] (x1)", x1), ("guesses[1] (x2)", x2))
        largest = run_checks(checks)
        grads, per_example = F.cosine_embedding(
            xp, (x1, x2), y, margin=self.margin, largest=largest, weights=weights, divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtypes(grads, guesses), per_example


class TripletMargin(LossCalculator):
    """Triplet margin loss: ``loss_i = max(0, margin + f(d(a_i, p_i)) - f(d(a_i, n_i)))``
    with ``d(x, y) = ||x - y + eps||_p`` (PyTorch's ``pairwise_distance``: eps is added
    to the difference). ``f`` is the identity (PyTorch ``TripletMarginLoss``) or,
    with ``squared``, the square (Gluon ``TripletLoss`` is ``squared=True, p=2, eps=0``).
    With ``swap`` the negative distance is ``min(d(a, n), d(p, n))`` (Balntas et al.).

    The gradient is a tuple ``(dL/da, dL/dp, dL/dn)``, the exact derivative
    (0 for a triplet that satisfies the margin; a zero difference has a zero
    norm gradient, as PyTorch's).

    Shapes: guesses a tuple ``(anchor, positive, negative)`` of ``(N, D)``
    floats. Truths must be ``None``: a triplet carries its own targets.

    Args:
        normalize: divide the loss and the gradients by N (triplets).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        margin: the required gap between the distances; >= 0.
        p: the norm's degree; >= 1.
        eps: added to each difference before the norm; >= 0.
        swap: use the closer of anchor and positive to the negative.
        squared: compare squared distances.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import TripletMargin
        >>> anchor = numpy.asarray([[0.0, 0.0]])
        >>> positive = numpy.asarray([[3.0, 4.0]])
        >>> negative = numpy.asarray([[0.0, 2.0]])
        >>> (ga, gp, gn), loss = TripletMargin(margin=1.0, eps=0.0)((anchor, positive, negative), None)
        >>> loss  # 1 + 5 - 2
        4.0
        >>> ga.round(6).tolist(), gn.round(6).tolist()
        ([[-0.6, 0.2]], [[0.0, -1.0]])

    Config::

        [loss]
        @losses = "TripletMargin.v1"
        margin = 1.0
        p = 2.0
        eps = 1e-6
        swap = false
        squared = false

    References:
        Balntas et al., "Learning local feature descriptors with triplets and
        shallow convolutional neural networks", BMVC 2016. PyTorch
        ``torch.nn.TripletMarginLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.TripletMarginLoss.html;
        Gluon ``mxnet.gluon.loss.TripletLoss``.
    """

    name = "TripletMargin"

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        squared: bool = False,
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        finite = dict(high=math.inf, high_open=True)
        self.margin = check_float(self.name, "margin", margin, low=0.0, **finite)
        self.p = check_float(self.name, "p", p, low=1.0, **finite)
        self.eps = check_float(self.name, "eps", eps, low=0.0, **finite)
        self.swap = check_bool(self.name, "swap", swap)
        self.squared = check_bool(self.name, "squared", squared)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        names = ("anchor", "positive", "negative")
        parts = guess_tuple(self.name, guesses, names)
        if truths is not None:
            raise call_error(
                self.name, "truths", f"must be None (a triplet carries its own targets), got {type(truths).__name__}",
                TypeError,
            )
        xp, (n, width) = array_module(parts[0]), parts[0].shape
        checks = Checks(self.name, xp)
        weights = row_weights(self.name, sample_weight, n, xp, parts[0].dtype, checks)
        finite_and_largest(checks, *((f"guesses[{i}] ({part})", x) for i, (part, x) in enumerate(zip(names, parts))))
        largest = run_checks(checks)
        self.check_distances_fit(width, largest, parts[0].dtype)
        grads, per_example = F.triplet_margin(
            xp, parts, None, margin=self.margin, p=self.p, eps=self.eps, swap=self.swap, squared=self.squared,
            largest=largest, weights=weights, divisor=divisor, want_grad=want_grad,
        )
        return restore_dtypes(grads, guesses), per_example

    def check_distances_fit(self, width: int, largest: float, dtype) -> None:
        """Refuse inputs whose distances (squared, with ``squared``) may exceed the dtype's range."""
        bound = F.triplet_distance_bound(width, largest, p=self.p, eps=self.eps)
        loss_bound = bound * bound if self.squared else self.margin + bound
        if loss_bound > float(numpy.finfo(dtype).max):
            what = "squared distances" if self.squared else "distances"
            raise call_error(
                self.name, "guesses", f"hold values up to {largest:.3g}, whose {what} may overflow {numpy.dtype(dtype)}"
            )


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

    Memory: the kernel matrices are made a few rows at a time; a call holds
    the gradient, a centred copy of one sample and the blocks' scratch
    (about 2.7x the gradient at N = M = 1024, D = 64; whole matrices took 163x).

    Shapes: guesses ``(N, D)``, truths ``(M, D)`` floats; M may differ from
    N but must be > 0 when N > 0.

    Args:
        normalize: report MMD^2 (True) or N * MMD^2 (False).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
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

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", bandwidth: Union[float, List[float]] = 1.0):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.bandwidth = check_bandwidths(self.name, bandwidth)

    @property
    def bandwidths(self) -> List[float]:
        return self.bandwidth if isinstance(self.bandwidth, list) else [self.bandwidth]

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        x = float_rows(self.name, "guesses", guesses)
        y = float_rows(self.name, "truths", truths).astype(x.dtype, copy=False)
        xp, n = array_module(x), x.shape[0]
        if y.shape[1] != x.shape[1]:
            raise call_error(
                self.name, "truths", f"must have {x.shape[1]} columns (as the guesses), got shape {tuple(y.shape)}"
            )
        if n and not y.shape[0]:
            raise call_error(self.name, "truths", "must have at least one row (the sample to match)")
        checks = Checks(self.name, xp)
        weights = row_weights(self.name, sample_weight, n, xp, x.dtype, checks)
        finite_and_largest(checks, ("guesses", x), ("truths", y))
        largest = run_checks(checks)
        if n == 0:
            return (restore_dtype(xp.zeros_like(x), guesses) if want_grad else None), xp.zeros((0,), dtype=x.dtype)
        grad, per_example = F.rbf_mmd(
            xp, x, y, bandwidths=self.bandwidths, largest=largest, weights=weights, divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), per_example
