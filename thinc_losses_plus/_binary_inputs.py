"""Inputs and settings shared by the binary / multi-label losses (sigmoid family).

Elementwise losses take guesses of shape ``(N,)`` or ``(N, C)`` and truths of
the same shape; a 1-d input is handled as one column. Value checks are device
reductions brought to the host together (one sync per call); the exact
problem is only diagnosed once something is known to be wrong.
"""
import math
from numbers import Real
from typing import Any, List, Optional, Tuple, Union

import numpy
from thinc.backends import get_array_ops

from ._checks import call_error, check_float, setting_error
from ._core import LossCalculator
from ._inputs import as_compute_dtype, check_same_shape, float_array, is_array, restore_dtype

#: Probabilities are clipped to ``[PROB_EPS, 1 - PROB_EPS]`` (Keras' epsilon)
#: so that ``p = 0`` or ``p = 1`` gives a finite loss and gradient; 1e-7 is
#: about the smallest margin for which ``1 - PROB_EPS < 1`` in float32.
PROB_EPS = 1e-7

Weights = Optional[Union[float, List[float]]]


# Settings ------------------------------------------------------------------


def check_weights(name: str, arg: str, value: Any, *, allow_scalar: bool) -> Weights:
    """Validate a non-negative weight, or a non-empty list of them (one per column)."""
    if value is None:
        return None
    if allow_scalar and isinstance(value, Real) and not isinstance(value, bool):
        return check_float(name, arg, value, low=0.0, high=math.inf, high_open=True)
    if isinstance(value, (list, tuple)) and value:
        return [check_float(name, arg, v, low=0.0, high=math.inf, high_open=True) for v in value]
    kind = "a number or a non-empty list of numbers" if allow_scalar else "a non-empty list of numbers"
    raise setting_error(name, arg, f"must be {kind} (one per column), got {value!r}", TypeError)


def check_missing_target(name: str, value: Any) -> Optional[float]:
    """``missing_value`` of an elementwise loss: a finite number outside ``[0, 1]``."""
    if value is None:
        return None
    value = check_float(name, "missing_value", value, low=-math.inf, high=math.inf, low_open=True, high_open=True)
    if 0.0 <= value <= 1.0:
        raise setting_error(name, "missing_value", f"must lie outside [0, 1] (it would be a valid target), got {value!r}")
    return value


def column_array(name: str, arg: str, values: Weights, n_columns: int, xp, dtype):
    """A per-column setting as a ``(1, C)`` array (a scalar stays a float)."""
    if values is None or isinstance(values, float):
        return values
    if len(values) != n_columns:
        raise call_error(name, arg, f"has {len(values)} entries but the guesses have {n_columns} columns")
    return xp.asarray(values, dtype=dtype).reshape(1, n_columns)


# Inputs --------------------------------------------------------------------


class ElementwiseCalculator(LossCalculator):
    """Base of the elementwise losses: the examples are the rows of ``(N,)`` or ``(N, C)`` guesses."""

    def count_examples(self, guesses) -> int:
        return count_rows(self.name, guesses)


def count_rows(name: str, guesses) -> int:
    """N for ``normalize``, refusing what is not a 1-d or 2-d float array first."""
    float_array(name, "guesses", guesses)
    if guesses.ndim not in (1, 2):
        raise call_error(name, "guesses", f"must have shape (N,) or (N, C), got {tuple(guesses.shape)}")
    return int(guesses.shape[0])


def host_flags(xp, *flags) -> List[bool]:
    """Bring several device booleans to the host in one transfer (one sync)."""
    return [bool(f) for f in xp.stack([xp.asarray(f) for f in flags]).tolist()]


def outside(x, low: float, high: float):
    """Device bool: ``x`` has a NaN or an entry outside ``[low, high]`` (no sync)."""
    return ~((x.min() >= low) & (x.max() <= high))


def describe_outside(name: str, arg: str, x, low: float, high: float, hint: str = "") -> Exception:
    """The error for an array known to fail :func:`outside` (slow path only)."""
    xp = get_array_ops(x).xp
    if not bool(xp.isfinite(x).all()):
        return call_error(name, arg, "contains NaN or infinite values")
    bad = float(x.min()) if float(x.min()) < low else float(x.max())
    return call_error(name, arg, f"must lie in [{low:g}, {high:g}]{hint}, got {bad!r}")


def elementwise_inputs(name: str, guesses, truths):
    """Check guesses ``(N,)``/``(N, C)`` and truths of the same shape.

    Returns ``(x, t, xp)``: both as ``(N, C)`` arrays (a 1-d input is one
    column) in the compute dtype. Values are not checked here.
    """
    count_rows(name, guesses)
    xp = get_array_ops(guesses).xp
    x = as_compute_dtype(guesses)
    if is_array(truths):
        if truths.dtype.kind not in "biuf":
            raise call_error(name, "truths", f"must hold numbers, got dtype {truths.dtype}", TypeError)
    elif isinstance(truths, (list, tuple)):
        host = numpy.asarray(truths, dtype=object) if truths else numpy.zeros((0,))
        if host.dtype == object and not all(
            isinstance(v, Real) and not isinstance(v, str) for v in host.reshape(-1)
        ):
            raise call_error(name, "truths", "must be a (nested) list of numbers of the guesses' shape", TypeError)
    else:
        raise call_error(name, "truths", f"must be an array or a list of numbers, got {type(truths).__name__}", TypeError)
    truths = xp.asarray(truths, dtype=x.dtype) if not is_array(truths) else xp.asarray(truths).astype(x.dtype, copy=False)
    check_same_shape(name, "truths", truths, guesses.shape)
    shape = (guesses.shape[0], 1) if guesses.ndim == 1 else guesses.shape
    return x.reshape(shape), truths.reshape(shape), xp


def combine_weights(*factors):
    """Product of the non-None weight factors (broadcast), or None."""
    weight = None
    for factor in factors:
        if factor is not None:
            weight = factor if weight is None else weight * factor
    return weight


def finish(grad, loss, weight, divisor: float, guesses) -> Tuple[Any, Any]:
    """Weight the elementwise terms (in place); return ``(grad / divisor, row sums)``."""
    if weight is not None:
        loss *= weight
    per_example = loss.sum(axis=1)
    if grad is not None:
        if weight is not None:
            grad *= weight
        if divisor != 1:
            grad /= divisor
        grad = restore_dtype(saturate_for(grad, guesses).reshape(guesses.shape), guesses)
    return grad, per_example


def saturate_for(grad, guesses):
    """Clip a float32 gradient to the finite range of float16 guesses.

    Probabilities of exactly 0 or 1 give gradients up to ``1 / PROB_EPS``,
    beyond float16's largest value (65504): they saturate instead of
    becoming infinite.
    """
    if guesses.dtype.itemsize >= 4:
        return grad
    big = float(numpy.finfo(guesses.dtype).max)
    return get_array_ops(grad).xp.clip(grad, -big, big)


# The maths functions below work in place on the arrays they allocate (never
# on their inputs): at 4096x50 the cost of fresh temporaries (page faults)
# is comparable to the arithmetic. ``clip`` replaces ``maximum``/``minimum``
# and masked selects (``where``), which are many times slower in numpy.


def exp_neg_abs(x, xp):
    """``exp(-|x|)``, in (0, 1] for any x."""
    e = xp.abs(x)
    xp.negative(e, out=e)
    return xp.exp(e, out=e)


def softplus_parts(x, xp):
    """``(softplus(x), exp(-|x|))``, stable for any x: max(x, 0) + log1p(exp(-|x|))."""
    e = exp_neg_abs(x, xp)
    softplus = xp.clip(x, 0.0, math.inf)
    softplus += xp.log1p(e)
    return softplus, e


def sigmoid_from_parts(x, e, xp):
    """``sigmoid(x) = exp(min(x, 0)) / (1 + exp(-|x|))`` from ``e = exp(-|x|)``: no overflow, no cancellation.

    ``e`` is overwritten with ``1 + e``.
    """
    sig = xp.clip(x, -math.inf, 0.0)
    xp.exp(sig, out=sig)
    e += 1.0
    sig /= e
    return sig


def sigmoid_targets(name: str, x, t, xp, *, from_logits: bool, missing_value: Optional[float]):
    """Mask missing targets and check the values (one device sync).

    Returns ``(t, keep)``: ``t`` with missing entries set to 0, and ``keep``
    (1 where the target counts, 0 where it is missing) or None if none is.
    """
    keep = None
    if missing_value is not None:
        keep = (t != missing_value).astype(t.dtype)
        t = t * keep
    if not x.size:
        return t, None
    bad_x = ~xp.isfinite(x.sum(dtype=xp.float64)) if from_logits else outside(x, 0.0, 1.0)
    any_missing = keep.min() < 1 if keep is not None else False
    bad_x, bad_t, any_missing = host_flags(xp, bad_x, outside(t, 0.0, 1.0), any_missing)
    if bad_x:
        hint = "" if from_logits else " (probabilities; pass from_logits=True for logits)"
        raise describe_outside(name, "guesses", x, 0.0, 1.0, hint)
    if bad_t:
        hint = "" if missing_value is None else f" or equal missing_value={missing_value:g}"
        raise describe_outside(name, "truths", t, 0.0, 1.0, hint)
    return t, (keep if any_missing else None)


