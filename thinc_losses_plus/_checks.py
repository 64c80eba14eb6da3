"""Errors and the validation of settings.

Every error names the calculator, the argument and the problem:

* settings, at construction: ``Cannot create <Name>: 'arg' ...``
* inputs, at call time:      ``Cannot calculate <Name>: 'arg' ...``

The checks of arrays live in :mod:`thinc_losses_plus._inputs`, those of
labels (names, missing values, class weights) in :mod:`thinc_losses_plus.labels`.
"""
import math
from numbers import Integral, Real
from typing import Any, Optional, Sequence

import numpy


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
