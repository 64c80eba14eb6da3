"""Embedding losses: cosine distance and cosine embedding (pairs).

An example is a row: guesses are ``(N, D)`` float arrays (or a tuple of
them: a pair, a triplet), and each row gives one loss. ``normalize`` divides
the loss and the gradient by the number of rows N (``CosineDistance`` with
``ignore_zeros`` divides by the rows it keeps). ``sample_weight`` is one
weight per row, ``(N,)`` or ``(N, 1)``. Tuple guesses give a tuple of
gradients, each the exact derivative of the loss with respect to that array.

The maths functions return ``(gradient or None, per-example losses)``,
unweighted and undivided; the classes apply the sample weights and divide.
The triplet loss lives in :mod:`thinc_losses_plus.triplet` and the kernel
two-sample loss (MMD) in :mod:`thinc_losses_plus.kernel`; they share the
input helpers below.
"""
import math
from numbers import Real
from typing import Any, Optional, Tuple

import numpy

from thinc.backends import get_array_ops
from thinc.types import Ragged

from ._checks import call_error, check_bool, check_float
from ._core import Evaluation, LossCalculator
from ._inputs import (
    as_compute_dtype,
    check_finite,
    check_same_shape,
    float_array,
    is_array,
    prepare_sample_weight,
    restore_dtype,
)

Array = Any
#: PyTorch's ``cosine_embedding_loss`` adds this to each squared norm.
COSINE_EMBEDDING_EPS = 1e-12


# Inputs --------------------------------------------------------------------


def float_rows(name: str, arg: str, x: Any) -> Array:
    """A finite ``(N, D)`` float array, in the compute dtype."""
    float_array(name, arg, x, ndim=2)
    check_finite(name, arg, x)
    return as_compute_dtype(x)


def guess_tuple(name: str, guesses: Any, parts: Tuple[str, ...]) -> Tuple[Array, ...]:
    """Check a tuple of ``len(parts)`` same-shape ``(N, D)`` arrays."""
    if not isinstance(guesses, tuple) or len(guesses) != len(parts):
        raise call_error(
            name, "guesses", f"must be a tuple ({', '.join(parts)}) of arrays, got {type(guesses).__name__}"
            + (f" of length {len(guesses)}" if isinstance(guesses, (tuple, list)) else ""),
            TypeError,
        )
    arrays = tuple(float_rows(name, f"guesses[{i}] ({p})", x) for i, (p, x) in enumerate(zip(parts, guesses)))
    for i, x in enumerate(arrays[1:], 1):
        if x.shape != arrays[0].shape:
            raise call_error(
                name, f"guesses[{i}] ({parts[i]})", f"must have shape {tuple(arrays[0].shape)} "
                f"(the shape of guesses[0]), got {tuple(x.shape)}",
            )
    return arrays


def row_scale(name: str, sample_weight: Any, n: int, xp, dtype, divisor) -> Tuple[Any, Any]:
    """``(weights, weights / divisor)``: one weight per row, ``(N,)``; ``(None, 1 / divisor)`` without weights."""
    if is_array(sample_weight) and tuple(sample_weight.shape) not in ((n,), (n, 1)):
        raise call_error(
            name, "sample_weight", f"must have shape ({n},) or ({n}, 1) (one weight per example), "
            f"got {tuple(sample_weight.shape)}",
        )
    weights = prepare_sample_weight(name, sample_weight, (n, 1), xp, dtype)
    if weights is None:
        return None, 1.0 / divisor
    weights = weights.reshape(n)
    return weights, weights / divisor


def signed_labels(name: str, truths: Any, n: int, xp, dtype) -> Array:
    """Labels -1/1, one per row, as an ``(N,)`` array of ``dtype``."""
    if isinstance(truths, (list, tuple)):
        if not all(isinstance(y, Real) and not isinstance(y, (bool, numpy.bool_)) for y in truths):
            raise call_error(name, "truths", "must be a list of -1 and 1", TypeError)
        truths = xp.asarray(truths, dtype=dtype)
    elif not is_array(truths):
        problem = f"must be an array or a list of -1 and 1, got {type(truths).__name__}"
        raise call_error(name, "truths", problem, TypeError)
    elif truths.dtype.kind not in "fiu":
        raise call_error(name, "truths", f"must hold -1 and 1, got dtype {truths.dtype}", TypeError)
    if truths.ndim == 2 and truths.shape[1] == 1:
        truths = truths.reshape(-1)
    if tuple(truths.shape) != (n,):
        raise call_error(name, "truths", f"must have shape ({n},) (one label per pair), got {tuple(truths.shape)}")
    y = xp.asarray(truths, dtype=dtype)
    if n and not bool(((y == 1) | (y == -1)).all()):
        raise call_error(name, "truths", "must hold only -1 (dissimilar) and 1 (similar)")
    return y


def row_norm(x: Array) -> Array:
    xp = get_array_ops(x).xp
    return xp.sqrt(xp.einsum("ij,ij->i", x, x))


# Maths ---------------------------------------------------------------------


def cosine_distance(g: Array, t: Array, *, eps: float, want_grad: bool) -> Tuple[Optional[Array], Array]:
    """``1 - g.t / (max(|g|, eps) * max(|t|, eps))`` per row, and its gradient w.r.t. ``g``.

    With ``a = max(|g|, eps)``, ``b = max(|t|, eps)`` and ``c`` the cosine,
    ``d/dg = (c * g / a * [|g| > eps] - t / b) / a``. At ``g = 0`` it is
    ``-t / (b * eps)``: large but finite, the exact derivative of the clamped cosine.
    """
    xp = get_array_ops(g).xp
    g_norm, t_norm = row_norm(g), row_norm(t)
    a, b = xp.maximum(g_norm, eps), xp.maximum(t_norm, eps)
    cos = xp.einsum("ij,ij->i", g, t) / (a * b)
    grad = None
    if want_grad:
        grad = ((cos / a) * (g_norm > eps) / a)[:, None] * g
        grad -= (1.0 / (a * b))[:, None] * t
    return grad, 1.0 - cos


def cosine_embedding(
    x1: Array, x2: Array, y: Array, *, margin: float, want_grad: bool
) -> Tuple[Optional[Tuple[Array, Array]], Array]:
    """PyTorch's cosine embedding loss per row: ``1 - cos`` if ``y = 1``, ``max(0, cos - margin)`` if ``y = -1``.

    ``cos = x1.x2 / sqrt((|x1|^2 + 1e-12) * (|x2|^2 + 1e-12))``; the gradient
    is returned for ``x1`` and ``x2``.
    """
    xp = get_array_ops(x1).xp
    s1 = xp.einsum("ij,ij->i", x1, x1) + COSINE_EMBEDDING_EPS
    s2 = xp.einsum("ij,ij->i", x2, x2) + COSINE_EMBEDDING_EPS
    root = xp.sqrt(s1 * s2)
    cos = xp.einsum("ij,ij->i", x1, x2) / root
    positive = y > 0
    loss = xp.where(positive, 1.0 - cos, xp.maximum(cos - margin, 0.0))
    if not want_grad:
        return None, loss
    # dL/dcos: -1 for similar pairs, 1 for dissimilar pairs beyond the margin.
    d_cos = xp.where(positive, -1.0, (cos > margin).astype(cos.dtype))
    g1 = (d_cos / root)[:, None] * x2 - (d_cos * cos / s1)[:, None] * x1
    g2 = (d_cos / root)[:, None] * x1 - (d_cos * cos / s2)[:, None] * x2
    return (g1, g2), loss


# Calculators ---------------------------------------------------------------


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

    def __init__(self, *, normalize: bool = True, ignore_zeros: bool = False, eps: float = 1e-8):
        super().__init__(normalize=normalize)
        self.ignore_zeros = check_bool(self.name, "ignore_zeros", ignore_zeros)
        self.eps = check_float(self.name, "eps", eps, low=0.0, low_open=True, high=math.inf, high_open=True)

    # With ignore_zeros, normalize's divisor depends on the truths, so this
    # class evaluates itself rather than through ``compute``. The divisor
    # stays on the device; ``_reduce`` makes the one transfer.
    def _evaluate(self, guesses, truths, sample_weight, *, want_grad: bool) -> Evaluation:
        if isinstance(guesses, Ragged):
            raise call_error(self.name, "guesses", "must not be a Ragged", TypeError)
        g = float_rows(self.name, "guesses", guesses)
        t = float_rows(self.name, "truths", truths)
        check_same_shape(self.name, "truths", t, g.shape)
        xp, n = get_array_ops(g).xp, g.shape[0]
        t = xp.asarray(t, dtype=g.dtype)
        weights, _ = row_scale(self.name, sample_weight, n, xp, g.dtype, 1.0)
        grad, per_example = cosine_distance(g, t, eps=self.eps, want_grad=want_grad)
        scale = weights
        divisor = n if (self.normalize and n > 0) else 1
        if self.ignore_zeros:
            keep = (t != 0).any(axis=1)
            scale = keep.astype(g.dtype) if weights is None else weights * keep
            if self.normalize and n > 0:
                divisor = xp.maximum(keep.sum(), 1)
        if scale is not None:
            per_example = per_example * scale
        if grad is not None:
            grad *= (1.0 / divisor) if scale is None else (scale / divisor)[:, None]
        return Evaluation(restore_dtype(grad, guesses), per_example, divisor)

    def _reduce(self, result: Evaluation) -> float:
        if result.per_example.size == 0:
            return 0.0
        xp = get_array_ops(result.per_example).xp
        return float(result.per_example.sum(dtype=xp.float64) / result.divisor)


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

    def __init__(self, *, normalize: bool = True, margin: float = 0.0):
        super().__init__(normalize=normalize)
        self.margin = check_float(self.name, "margin", margin, low=-1.0, high=1.0)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        x1, x2 = guess_tuple(self.name, guesses, ("x1", "x2"))
        xp, n = get_array_ops(x1).xp, x1.shape[0]
        y = signed_labels(self.name, truths, n, xp, x1.dtype)
        weights, scale = row_scale(self.name, sample_weight, n, xp, x1.dtype, divisor)
        grads, per_example = cosine_embedding(x1, x2, y, margin=self.margin, want_grad=want_grad)
        return weigh_tuple_result(grads, per_example, weights, scale, guesses)


def weigh_tuple_result(grads, per_example, weights, scale, guesses):
    """Apply per-row weights to the losses and ``scale`` (weights / divisor) to
    each gradient of a tuple, returned in the guesses' dtypes."""
    if weights is not None:
        per_example = per_example * weights
    if grads is not None:
        factor = scale if isinstance(scale, float) else scale[:, None]
        grads = tuple(restore_dtype(g * factor, x) for g, x in zip(grads, guesses))
    return grads, per_example
