"""The input layer: every array a calculator reads passes through here.

One owner for what all families share:

* **types and shapes**: float guesses of the expected ndim, truths of the
  guesses' shape, tuples of same-shape arrays, sequences of one dtype and
  width, ``sample_weight`` of shape ``(N,)``, ``(N, 1)`` or the guesses';
* **layout**: the arrays the maths reads are C-contiguous, in the compute
  dtype (float16 is computed in float32). Fortran order, slices, negative
  strides and broadcast views are copied once here, so that every layout
  gives the bits of a C-contiguous copy, and the maths may index flat;
* **values** (the one NaN strategy): checks are device reductions whose
  results are gathered by :class:`Checks` and brought to the host together,
  in one transfer per call. Only once a check has failed is the exact
  problem diagnosed (slowly), so that the error names it.

Nothing here writes into an input: an array returned unchanged (already
C-contiguous, float32/64) is the caller's, never to be written in place.
"""
import math
from numbers import Real
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy
from thinc.backends import get_array_ops
from thinc.types import Padded, Ragged

from ._checks import call_error

Array = Any


# Types and layout ---------------------------------------------------------


def is_array(x: Any) -> bool:
    """True for numpy and cupy arrays (not for ``Ragged``)."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim") and not isinstance(x, Ragged)


def array_module(x: Array):
    """The array module (numpy or cupy) of ``x``, through Thinc's ops."""
    return get_array_ops(x).xp


def float_array(name: str, arg: str, x: Any, *, ndim: Optional[int] = None):
    """Check that ``x`` is a floating-point numpy/cupy array (of ``ndim`` dims)."""
    if not is_array(x):
        raise call_error(name, arg, f"must be a numpy or cupy array of floats, got {type(x).__name__}", TypeError)
    if x.dtype.kind != "f":
        raise call_error(name, arg, f"must have a float dtype, got {x.dtype}", TypeError)
    if ndim is not None and x.ndim != ndim:
        raise call_error(name, arg, f"must be {ndim}-dimensional, got shape {tuple(x.shape)}")
    return x


def as_compute_dtype(x: Array) -> Array:
    """``x`` C-contiguous in the dtype the maths runs in (float16 becomes float32).

    A C-contiguous float32/float64 array is returned as it is (no copy):
    callers never write into it.
    """
    if x.dtype.itemsize < 4:
        return x.astype("float32", order="C")
    return array_module(x).ascontiguousarray(x)


def restore_dtype(grad, like):
    """Cast a gradient computed in float32 back to the float16 guesses' dtype."""
    if grad is not None and grad.dtype != like.dtype:
        return grad.astype(like.dtype)
    return grad


def float_guesses(name: str, arg: str, x: Any, ndims: Sequence[int] = (1, 2)) -> Array:
    """Guesses with one row (or one value) per example, in the compute dtype."""
    float_array(name, arg, x)
    if x.ndim not in ndims:
        want = " or ".join(f"{d}-dimensional" for d in ndims)
        raise call_error(name, arg, f"must be {want} (one row per example), got shape {tuple(x.shape)}")
    return as_compute_dtype(x)


def check_same_shape(name: str, arg: str, x, shape) -> None:
    if tuple(x.shape) != tuple(shape):
        raise call_error(name, arg, f"must have shape {tuple(shape)} (the guesses' shape), got {tuple(x.shape)}")


def numeric_truths(name: str, truths: Any, xp, dtype, shape) -> Array:
    """The truths as a C-contiguous ``xp`` array of ``dtype`` with the guesses' shape."""
    if is_array(truths):
        kind = truths.dtype.kind
    elif isinstance(truths, (list, tuple)):
        host = numpy.asarray(truths, dtype=object) if truths else numpy.zeros((0,))
        if host.dtype == object and not all(
            isinstance(v, Real) and not isinstance(v, str) for v in host.reshape(-1)
        ):
            raise call_error(name, "truths", "must be a (nested) list of numbers of the guesses' shape", TypeError)
        truths = numpy.asarray(truths)
        kind = truths.dtype.kind
    else:
        raise call_error(name, "truths", f"must be an array of numbers, got {type(truths).__name__}", TypeError)
    if kind not in "biuf":
        raise call_error(name, "truths", f"must hold numbers, got dtype {truths.dtype}", TypeError)
    try:
        truths = xp.ascontiguousarray(xp.asarray(truths, dtype=dtype))
    except TypeError as err:  # a cupy array with numpy guesses
        raise call_error(name, "truths", f"must be on the guesses' device ({err})", TypeError) from None
    check_same_shape(name, "truths", truths, shape)
    return truths


def float_rows(name: str, arg: str, x: Any) -> Array:
    """An ``(N, D)`` float array, in the compute dtype (values are checked later)."""
    float_array(name, arg, x, ndim=2)
    return as_compute_dtype(x)


def guess_tuple(name: str, guesses: Any, parts: Tuple[str, ...]) -> Tuple[Array, ...]:
    """A tuple of ``len(parts)`` same-shape ``(N, D)`` arrays, in the compute dtype."""
    if not isinstance(guesses, tuple) or len(guesses) != len(parts):
        raise call_error(
            name, "guesses", f"must be a tuple ({', '.join(parts)}) of arrays, got {type(guesses).__name__}"
            + (f" of length {len(guesses)}" if isinstance(guesses, (tuple, list)) else ""),
            TypeError,
        )
    arrays = tuple(float_rows(name, f"guesses[{i}] ({p})", x) for i, (p, x) in enumerate(zip(parts, guesses)))
    for i, x in enumerate(arrays[1:], 1):
        if x.shape != arrays[0].shape or x.dtype != arrays[0].dtype:
            raise call_error(
                name, f"guesses[{i}] ({parts[i]})", f"must have the shape and dtype of guesses[0], "
                f"{tuple(arrays[0].shape)} {guesses[0].dtype}, got {tuple(x.shape)} {guesses[i].dtype}",
            )
    return arrays


def sequence_list(name: str, guesses: Any, *, what: str = "(T, C) arrays, one per sequence") -> List[Array]:
    """A list of 2-d float arrays of one array type, dtype and width."""
    if not isinstance(guesses, (list, tuple)):
        raise call_error(name, "guesses", f"must be a list of {what}, got {type(guesses).__name__}", TypeError)
    guesses = list(guesses)
    if not guesses:
        return guesses
    first = guesses[0]
    for i, g in enumerate(guesses):
        if not is_array(g) or g.dtype.kind != "f":
            kind = f"dtype {g.dtype}" if is_array(g) else type(g).__name__
            raise call_error(name, "guesses", f"sequence {i} must be a float array, got {kind}", TypeError)
        if g.ndim != 2:
            raise call_error(name, "guesses", f"sequence {i} must be 2-dimensional (T, C), got shape {tuple(g.shape)}")
        if type(g) is not type(first) or g.dtype != first.dtype:
            raise call_error(
                name, "guesses",
                f"sequence {i} is a {type(g).__name__} of {g.dtype}, sequence 0 a {type(first).__name__} of {first.dtype}",
                TypeError,
            )
        if g.shape[1] != first.shape[1]:
            raise call_error(name, "guesses", f"sequence {i} has {g.shape[1]} columns, sequence 0 has {first.shape[1]}")
    return guesses


# sample_weight --------------------------------------------------------------


def prepare_sample_weight(name: str, sample_weight: Any, shape, xp, dtype, checks: Optional["Checks"] = None):
    """Return ``sample_weight`` as a C-contiguous array broadcastable to ``shape``.

    Accepted: ``(N,)`` and ``(N, 1)`` (one weight per example, returned as
    ``(N, 1, ...)`` for multi-dimensional guesses and ``(N,)`` for 1-d ones)
    or ``shape`` itself (one weight per element). The values must be finite
    and non-negative: checked with the other checks of the call when
    ``checks`` is given, else at once. ``None`` stays ``None``.
    """
    if sample_weight is None:
        return None
    if is_array(sample_weight):
        if sample_weight.dtype.kind not in "fiu":
            raise call_error(name, "sample_weight", f"must hold numbers, got dtype {sample_weight.dtype}", TypeError)
        try:
            weights = xp.asarray(sample_weight, dtype=dtype)
        except TypeError as err:  # a cupy array with numpy guesses
            raise call_error(name, "sample_weight", f"must be on the guesses' device ({err})", TypeError) from None
    elif isinstance(sample_weight, (list, tuple)):
        if not all(isinstance(w, Real) and not isinstance(w, bool) for w in sample_weight):
            raise call_error(name, "sample_weight", "must be a list of numbers", TypeError)
        weights = xp.asarray(sample_weight, dtype=dtype)
    else:
        raise call_error(
            name, "sample_weight", f"must be an array or a list, got {type(sample_weight).__name__}", TypeError
        )
    shape = tuple(shape)
    n = shape[0]
    per_row = (n,) + (1,) * (len(shape) - 1)
    if weights.shape in ((n,), (n, 1), per_row):
        weights = weights.reshape(per_row)
    elif weights.shape != shape:
        shapes = sorted({(n,), (n, 1), shape}, key=len)
        listed = ", ".join(str(s) for s in shapes[:-1]) + f" or {shapes[-1]}"
        raise call_error(name, "sample_weight", f"must have shape {listed}, got {tuple(weights.shape)}")
    weights = xp.ascontiguousarray(weights)
    own = checks is None
    checks = Checks(name, xp) if own else checks
    weight_checks(checks, weights)
    if own:
        checks.run()
    return weights


def weight_checks(checks: "Checks", weights) -> None:
    """Register the value checks of prepared sample weights: finite, non-negative."""
    if weights is None or not weights.size:
        return
    xp = checks.xp
    checks.fail_if(~xp.isfinite(weights.sum(dtype=xp.float64)), "sample_weight", lambda: "contains NaN or infinite values")
    checks.fail_if(weights.min() < 0, "sample_weight", lambda: "must be non-negative")


# Values: the one NaN strategy -------------------------------------------------


class Checks:
    """Device-side checks of one call, brought to the host in one transfer.

    ``fail_if(flag, arg, describe)`` registers a 0-d device boolean that is
    true when something is wrong, and a function returning the message (it
    may look at the arrays again: it only runs after a failure).
    ``request(value)`` asks for a 0-d device number the maths needs on the
    host. :meth:`run` transfers every flag and value at once, raises the
    first failure, and returns the requested values in order.
    """

    def __init__(self, name: str, xp):
        self.name = name
        self.xp = xp
        self._flags: List[Any] = []
        self._problems: List[Tuple[str, Callable[[], Optional[str]]]] = []
        self._values: List[Any] = []

    def fail_if(self, flag, arg: str, describe: Callable[[], Optional[str]]) -> None:
        if flag is False:
            return
        self._flags.append(flag)
        self._problems.append((arg, describe))

    def request(self, value) -> None:
        self._values.append(value)

    def finite(self, arg: str, x, *, hint: str = "") -> None:
        """Fail if ``x`` holds NaN or inf (one reduction: a float64 sum)."""
        if x.size:
            self.fail_if(~self.xp.isfinite(x.sum(dtype=self.xp.float64)), arg, lambda: finite_problem(x, hint))

    def within(self, arg: str, x, low: float, high: float, hint: str = "") -> None:
        """Fail if ``x`` holds NaN or a value outside ``[low, high]`` (min and max)."""
        if x.size:
            self.fail_if(outside(x, low, high), arg, lambda: range_problem(x, low, high, hint))

    def run(self) -> List[float]:
        items = self._flags + self._values
        if not items:
            return []
        xp = self.xp
        host = xp.stack([xp.asarray(v, dtype=xp.float64).reshape(()) for v in items]).tolist()
        for failed, (arg, describe) in zip(host, self._problems):
            if failed:
                problem = describe()
                if problem:
                    raise call_error(self.name, arg, problem)
        return host[len(self._flags):]


def host_flags(xp, *flags) -> List[bool]:
    """Bring several device booleans to the host in one transfer (one sync)."""
    return [bool(f) for f in xp.stack([xp.asarray(f) for f in flags]).tolist()]


def outside(x, low: float, high: float):
    """Device bool: ``x`` has a NaN or an entry outside ``[low, high]`` (no sync)."""
    return ~((x.min() >= low) & (x.max() <= high))


def finite_problem(x, hint: str = "") -> Optional[str]:
    """The message for an array whose float64 sum is not finite (None if it is finite after all)."""
    xp = array_module(x)
    if not bool(xp.isfinite(x).all()):
        return "contains NaN or infinite values" + hint
    return None  # finite values whose float64 sum overflows: nothing wrong with them


def range_problem(x, low: float, high: float, hint: str = "") -> str:
    xp = array_module(x)
    if not bool(xp.isfinite(x).all()) and not (math.isinf(low) or math.isinf(high)):
        return "contains NaN or infinite values"
    if bool(xp.isnan(x).any()):
        return "contains NaN values"
    bad = float(x.min()) if float(x.min()) < low else float(x.max())
    return f"must lie in [{low:g}, {high:g}]{hint}, got {bad!r}"


def check_finite(name: str, arg: str, x) -> None:
    """Raise now if ``x`` holds NaN or inf (for code outside a :class:`Checks`)."""
    checks = Checks(name, array_module(x))
    checks.finite(arg, x)
    checks.run()


def check_loss_finite(name: str, per_example: Array, inputs: Tuple[Tuple[str, Array], ...]) -> None:
    """Raise if a per-example loss is NaN or inf, naming the input responsible.

    For losses that are finite for every finite input: a non-finite input
    makes the loss non-finite, so one reduction over the N losses checks
    every input; the slow diagnosis runs only after it failed.
    """
    xp = array_module(per_example)
    if per_example.size and not bool(xp.isfinite(per_example.sum(dtype=xp.float64))):
        for arg, x in inputs:
            problem = finite_problem(x)
            if problem:
                raise call_error(name, arg, problem)
        if bool(xp.isfinite(per_example).all()):
            return  # finite losses whose float64 sum overflows: the reported loss is inf, honestly
        raise call_error(
            name, "guesses", f"give a loss that overflows {per_example.dtype}: they are too far from the truths"
        )


# Elementwise inputs (sigmoid family) ---------------------------------------------
#
# Binary, multi-label and margin losses score each entry of ``(N,)`` or
# ``(N, C)`` guesses against the entry of truths of the same shape. A 1-d
# input is one column: the maths always sees ``(N, C)`` arrays, and the
# gradient is reshaped back to the guesses' shape.


class ElementwiseRows:
    """Mixin for elementwise calculators: the examples are the rows of ``(N,)`` or ``(N, C)`` guesses."""

    name: str

    def count_examples(self, guesses) -> int:
        return count_rows(self.name, guesses)


def count_rows(name: str, guesses: Any) -> int:
    """N, refusing what is not a 1-d or 2-d float array."""
    float_array(name, "guesses", guesses)
    if guesses.ndim not in (1, 2):
        raise call_error(name, "guesses", f"must have shape (N,) or (N, C), got {tuple(guesses.shape)}")
    return int(guesses.shape[0])


def elementwise_inputs(name: str, guesses: Any, truths: Any) -> Tuple[Array, Array]:
    """Guesses and truths of the same shape as C-contiguous ``(N, C)`` arrays in the compute dtype.

    Truths may be floats, ints, bools or (nested) lists of numbers. Values are
    not checked here.
    """
    count_rows(name, guesses)
    x = as_compute_dtype(guesses)
    t = numeric_truths(name, truths, array_module(x), x.dtype, guesses.shape)
    shape = (guesses.shape[0], 1) if guesses.ndim == 1 else tuple(guesses.shape)
    return x.reshape(shape), t.reshape(shape)


def elementwise_weights(name: str, sample_weight: Any, guesses: Any, x: Array, checks: "Checks", *factors):
    """The product of ``factors`` and ``sample_weight`` (in that order), or None.

    ``factors`` are None or arrays broadcastable to the ``(N, C)`` work array
    ``x`` (a mask, ``(1, C)`` class weights, ...). ``sample_weight`` may have
    shape ``(N,)``, ``(N, 1)`` or the guesses'; its values are checked with the
    call's ``checks``. The result is None, ``(N, 1)`` or ``(N, C)``: what
    :func:`thinc_losses_plus._core.row_sum` takes.
    """
    xp = checks.xp
    weights = prepare_sample_weight(name, sample_weight, guesses.shape, xp, x.dtype, checks)
    if weights is not None and weights.ndim == 1:
        weights = weights.reshape(-1, 1)
    product = None
    for factor in factors + (weights,):
        if factor is not None:
            product = factor if product is None else product * factor
    if product is not None and product.shape[0] != x.shape[0] and product.shape[1] != 1:
        product = xp.broadcast_to(product, x.shape)  # (1, C) alone: one weight per column
    return product


def check_loss_overflow(checks: "Checks", per_example: Array) -> None:
    """Register the check that no per-example loss overflowed (NaN or inf from finite inputs).

    Registered after the checks of the inputs, so that a non-finite input is
    reported as such; what remains is a loss too large for its dtype.
    """
    if not per_example.size:
        return
    xp = checks.xp

    def describe() -> Optional[str]:
        if bool(xp.isfinite(per_example).all()):
            return None  # finite losses whose float64 sum overflows: the reported loss is inf, honestly
        hint = "; scale them down or compute in float64" if per_example.dtype.itemsize < 8 else ""
        return f"give a loss that overflows {per_example.dtype}: they are too far from the truths{hint}"

    checks.fail_if(~xp.isfinite(per_example.sum(dtype=xp.float64)), "guesses", describe)


def elementwise_grad(grad: Optional[Array], guesses: Array) -> Optional[Array]:
    """A gradient of the ``(N, C)`` work array in the guesses' shape and dtype.

    For float16 guesses (computed in float32) the gradient saturates at
    float16's largest value instead of becoming infinite: probabilities of
    exactly 0 or 1 give gradients up to ``1 / PROB_EPS`` (1e7).
    """
    if grad is None:
        return None
    if guesses.dtype.itemsize < 4:
        big = float(numpy.finfo(guesses.dtype).max)
        grad = array_module(grad).clip(grad, -big, big)
    return restore_dtype(grad.reshape(guesses.shape), guesses)


# Sequence containers ------------------------------------------------------------
#
# A batch of sequences arrives as a list of (T_i, C) arrays, a ``Ragged``
# (rows of all sequences, and their lengths), a ``Padded`` (Thinc's
# time-major (T, B, C) batch, what its LSTM layers emit) or a tuple
# ``(array, lengths)`` of a batch-major padded (B, T, C) array (Gluon's NTC
# layout) and the length of each sequence. Calculators score the list and
# hand the gradients back in the container the guesses came in.


def _host_ints(name: str, arg: str, values) -> numpy.ndarray:
    host = values.get() if hasattr(values, "get") else numpy.asarray(values)
    if host.dtype.kind not in "iu" or host.ndim != 1:
        raise call_error(name, arg, f"must be a 1-d array of int lengths, got {host.dtype} of shape {host.shape}", TypeError)
    if (host < 0).any():
        raise call_error(name, arg, "must not hold negative lengths")
    return host.astype("int64")


def unpack_sequences(name: str, guesses: Any) -> Tuple[List[Array], Callable[[List[Array]], Any]]:
    """``(sequences, pack)``: the guesses as a list of (T_i, C) arrays in example
    order, and a function turning one gradient per sequence into the guesses' container."""
    if isinstance(guesses, Ragged):
        data = guesses.dataXd
        float_array(name, "guesses", data, ndim=2)
        lengths = _host_ints(name, "guesses", guesses.lengths)
        if int(lengths.sum()) != data.shape[0]:
            raise call_error(
                name, "guesses", f"is a Ragged whose lengths add up to {int(lengths.sum())}, but its data has {data.shape[0]} rows"
            )
        bounds = numpy.concatenate([[0], numpy.cumsum(lengths)]).tolist()
        sequences = [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        xp = array_module(data)

        def pack_ragged(grads):
            grad = xp.concatenate(grads) if grads else xp.zeros(data.shape, dtype=data.dtype)
            return Ragged(grad, guesses.lengths)

        return sequences, pack_ragged
    if isinstance(guesses, Padded):
        data = guesses.data
        float_array(name, "guesses", data, ndim=3)
        lengths = _host_ints(name, "guesses", guesses.lengths)
        indices = _host_ints(name, "guesses", guesses.indices)
        n_steps, n_seqs = data.shape[:2]
        if len(lengths) != n_seqs or len(indices) != n_seqs or sorted(indices.tolist()) != list(range(n_seqs)):
            raise call_error(name, "guesses", f"is a Padded whose lengths/indices do not describe its {n_seqs} sequences")
        if n_seqs and int(lengths.max()) > n_steps:
            raise call_error(name, "guesses", f"is a Padded with a sequence of {int(lengths.max())} steps but {n_steps} time steps")
        sequences: List[Array] = [None] * n_seqs
        for column, (index, length) in enumerate(zip(indices.tolist(), lengths.tolist())):
            sequences[index] = data[:length, column]
        xp = array_module(data)

        def pack_padded(grads):
            grad = xp.zeros(data.shape, dtype=data.dtype)
            for column, (index, length) in enumerate(zip(indices.tolist(), lengths.tolist())):
                grad[:length, column] = grads[index]
            return Padded(grad, guesses.size_at_t, guesses.lengths, guesses.indices)

        return sequences, pack_padded
    if isinstance(guesses, tuple) and len(guesses) == 2 and is_array(guesses[0]) and guesses[0].ndim == 3:
        data, lengths = guesses
        float_array(name, "guesses", data, ndim=3)
        lengths = _host_ints(name, "guesses", lengths if is_array(lengths) else numpy.asarray(lengths, dtype="int64"))
        n_seqs, n_steps = data.shape[:2]
        if len(lengths) != n_seqs or (n_seqs and int(lengths.max()) > n_steps):
            raise call_error(
                name, "guesses", f"is a padded ({n_seqs}, {n_steps}, C) array whose lengths {lengths.tolist()} do not fit it"
            )
        sequences = [data[i, :length] for i, length in enumerate(lengths.tolist())]
        xp = array_module(data)

        def pack_array(grads):
            grad = xp.zeros(data.shape, dtype=data.dtype)
            for i, length in enumerate(lengths.tolist()):
                grad[i, :length] = grads[i]
            return grad

        return sequences, pack_array
    return sequence_list(name, guesses), list
