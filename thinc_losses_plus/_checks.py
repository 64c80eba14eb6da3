"""Validation helpers shared by every calculator.

Every error names the calculator, the argument and the problem:

* settings, at construction: ``Cannot create <Name>: 'arg' ...``
* inputs, at call time:      ``Cannot calculate <Name>: 'arg' ...``

Checks on arrays are written as reductions of the input's own array module,
so they run on numpy and cupy alike; the fast paths combine several
conditions into one reduction and only diagnose the exact problem once
something is known to be wrong.
"""
import math
from numbers import Integral, Real
from typing import Any, Optional, Sequence

import numpy

from thinc.types import Ragged


def setting_error(name: str, arg: str, problem: str, cls=ValueError) -> Exception:
    return cls(f"Cannot create {name}: '{arg}' {problem}")


def call_error(name: str, arg: str, problem: str, cls=ValueError) -> Exception:
    return cls(f"Cannot calculate {name}: '{arg}' {problem}")


# Settings ---------------------------------------------------------------


def check_bool(name: str, arg: str, value: Any) -> bool:
    if not isinstance(value, (bool, numpy.bool_)):
        raise setting_error(name, arg, f"must be a bool, got {value!r}", TypeError)
    return bool(value)


def check_float(
    name: str,
    arg: str,
    value: Any,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float, refusing bools, NaN and values out of range."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise setting_error(name, arg, f"must be a number, got {value!r}", TypeError)
    value = float(value)
    if math.isnan(value):
        raise setting_error(name, arg, "must not be NaN")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise setting_error(name, arg, f"must be in {left}{lo}, {hi}{right}, got {value!r}")
    return value


def check_int(name: str, arg: str, value: Any, *, low: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise setting_error(name, arg, f"must be an int, got {value!r}", TypeError)
    if low is not None and value < low:
        raise setting_error(name, arg, f"must be >= {low}, got {value!r}")
    return int(value)


def check_choice(name: str, arg: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise setting_error(name, arg, f"must be one of {list(choices)}, got {value!r}")
    return value


# Arrays -----------------------------------------------------------------


def is_array(x: Any) -> bool:
    """True for numpy and cupy arrays (anything with ``shape``, ``dtype`` and ``__array_namespace__``-like API)."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim") and not isinstance(x, Ragged)


def float_array(name: str, arg: str, x: Any, *, ndim: Optional[int] = None):
    """Check that ``x`` is a floating-point numpy/cupy array (of ``ndim`` dims)."""
    if not is_array(x):
        raise call_error(
            name, arg, f"must be a numpy or cupy array of floats, got {type(x).__name__}", TypeError
        )
    if x.dtype.kind != "f":
        raise call_error(name, arg, f"must have a float dtype, got {x.dtype}", TypeError)
    if ndim is not None and x.ndim != ndim:
        raise call_error(name, arg, f"must be {ndim}-dimensional, got shape {tuple(x.shape)}")
    return x


def check_finite(name: str, arg: str, x) -> None:
    """Raise if ``x`` holds NaN or inf.

    The max and the min are finite exactly when every element is (both
    propagate NaN): two fast reductions and no array-sized temporary.
    """
    if x.size and not (math.isfinite(float(x.max())) and math.isfinite(float(x.min()))):
        raise call_error(name, arg, "contains NaN or infinite values")


def check_same_shape(name: str, arg: str, x, shape) -> None:
    if tuple(x.shape) != tuple(shape):
        raise call_error(
            name, arg, f"must have shape {tuple(shape)} (the guesses' shape), got {tuple(x.shape)}"
        )


def prepare_sample_weight(name: str, sample_weight: Any, shape, xp, dtype):
    """Return ``sample_weight`` as an array broadcastable to ``shape``.

    Accepted shapes: ``(N,)`` and ``(N, 1)`` (one weight per example, returned
    as ``(N, 1)``) or ``shape`` itself (one weight per element). Weights must
    be finite and non-negative. ``None`` stays ``None``.
    """
    if sample_weight is None:
        return None
    if is_array(sample_weight):
        if sample_weight.dtype.kind not in "fiu":
            raise call_error(
                name, "sample_weight", f"must hold numbers, got dtype {sample_weight.dtype}", TypeError
            )
        weights = xp.asarray(sample_weight, dtype=dtype)
    elif isinstance(sample_weight, (list, tuple)):
        if not all(isinstance(w, Real) and not isinstance(w, bool) for w in sample_weight):
            raise call_error(name, "sample_weight", "must be a list of numbers", TypeError)
        weights = xp.asarray(sample_weight, dtype=dtype)
    else:
        raise call_error(
            name, "sample_weight", f"must be an array or a list, got {type(sample_weight).__name__}", TypeError
        )
    n = shape[0]
    if weights.shape == (n,):
        weights = weights.reshape((n,) + (1,) * (len(shape) - 1))
    elif not (weights.shape == tuple(shape) or (weights.ndim == len(shape) and weights.shape[0] == n and all(d == 1 for d in weights.shape[1:]))):
        raise call_error(
            name,
            "sample_weight",
            f"must have shape ({n},), ({n}, 1) or {tuple(shape)}, got {tuple(weights.shape)}",
        )
    if weights.size:
        low = weights.min()
        if not bool(xp.isfinite(weights.sum(dtype=xp.float64))):
            raise call_error(name, "sample_weight", "contains NaN or infinite values")
        if bool(low < 0):
            raise call_error(name, "sample_weight", "must be non-negative")
    return weights
