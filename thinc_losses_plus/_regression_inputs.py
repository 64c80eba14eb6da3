"""Inputs and plumbing shared by the regression losses.

:func:`regression_inputs` checks guesses (floats, ``(N, C)`` or ``(N,)``)
and truths (numbers of the same shape) and converts them to the compute
dtype. Inputs are not scanned for NaN/inf up front: a non-finite input
always gives a non-finite loss, so :func:`check_loss_finite` runs one
reduction over the N per-example losses, and only then diagnoses the inputs.
:func:`finish_elementwise` weights an elementwise loss and gradient, sums the
rows and divides the gradient.
"""
from typing import Any, Optional, Tuple

import numpy
from thinc.backends import get_array_ops

from ._checks import call_error
from ._inputs import (
    as_compute_dtype,
    check_finite,
    check_same_shape,
    float_array,
    is_array,
    prepare_sample_weight,
)

Array = Any
Result = Tuple[Optional[Array], Array]


def float_guesses(name: str, arg: str, guesses: Any) -> Array:
    """Check a guesses array: floats, one row (or one value) per example."""
    float_array(name, arg, guesses)
    if guesses.ndim not in (1, 2):
        raise call_error(
            name, arg, f"must be 1- or 2-dimensional (one row per example), got shape {tuple(guesses.shape)}"
        )
    return guesses


def numeric_truths(name: str, truths: Any, xp, dtype, shape) -> Array:
    """Return the truths as an ``xp`` array of ``dtype`` with the guesses' shape."""
    if is_array(truths):
        kind = truths.dtype.kind
    elif isinstance(truths, (list, tuple)):
        truths = numpy.asarray(truths)
        kind = truths.dtype.kind
    else:
        raise call_error(name, "truths", f"must be an array of numbers, got {type(truths).__name__}", TypeError)
    if kind not in "fiu":
        raise call_error(name, "truths", f"must hold numbers, got dtype {truths.dtype}", TypeError)
    try:
        truths = xp.asarray(truths, dtype=dtype)
    except TypeError as err:  # a cupy array with numpy guesses
        raise call_error(name, "truths", f"must be on the guesses' device ({err})", TypeError) from None
    check_same_shape(name, "truths", truths, shape)
    return truths


def regression_inputs(name: str, guesses: Any, truths: Any, sample_weight: Any):
    """Validate the inputs; return ``(xp, guesses, truths, weights)`` in the compute dtype."""
    float_guesses(name, "guesses", guesses)
    xp = get_array_ops(guesses).xp
    g = as_compute_dtype(guesses)
    t = numeric_truths(name, truths, xp, g.dtype, g.shape)
    weights = prepare_sample_weight(name, sample_weight, g.shape, xp, g.dtype)
    return xp, g, t, weights


def check_loss_finite(name: str, per_example: Array, inputs: Tuple[Tuple[str, Array], ...]) -> None:
    """Raise if a per-example loss is NaN or inf, naming the input responsible."""
    xp = get_array_ops(per_example).xp
    if per_example.size and not bool(xp.isfinite(per_example.sum())):
        for arg, x in inputs:
            check_finite(name, arg, x)
        raise call_error(
            name,
            "guesses",
            f"give a loss that overflows {per_example.dtype}: they are too far from the truths",
        )


def row_sum(x: Array, weights=None) -> Array:
    """Per-example ``sum(x * weights)`` over the columns of a row (2-d) or
    the value itself (1-d; then possibly ``x`` itself), without an (N, C)
    temporary. ``weights``: None, ``x``'s shape, or one per row ``(N, 1)``."""
    xp = get_array_ops(x).xp
    if x.ndim == 1:
        return x if weights is None else x * weights
    if weights is None:
        return xp.einsum("ij->i", x)
    if weights.shape == x.shape:
        return xp.einsum("ij,ij->i", x, weights)
    return xp.einsum("ij->i", x) * weights.reshape(-1)


def row_dot(a: Array, b: Array, weights=None) -> Array:
    """Per-example ``sum(a * b * weights)``, as :func:`row_sum`."""
    xp = get_array_ops(a).xp
    if a.ndim == 1:
        out = a * b
        return out if weights is None else out * weights
    if weights is None:
        return xp.einsum("ij,ij->i", a, b)
    if weights.shape == a.shape:
        return xp.einsum("ij,ij,ij->i", a, b, weights)
    return xp.einsum("ij,ij->i", a, b) * weights.reshape(-1)


def scale_grad(grad: Array, weights, divisor: float) -> Array:
    """Weight an elementwise gradient and divide it by ``divisor``, in place."""
    if weights is not None:
        grad *= weights
    if divisor != 1:
        grad /= divisor
    return grad


def finish_elementwise(loss: Array, grad: Optional[Array], weights, divisor: float) -> Result:
    """Weight and divide the elementwise gradient; weight and sum the loss rows."""
    if grad is not None:
        grad = scale_grad(grad, weights, divisor)
    return grad, row_sum(loss, weights)
