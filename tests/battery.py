"""The shared test battery: one table of cases, the same checks for each.

A family adds its losses by listing :class:`Case` objects in
``tests/cases/<family>.py`` (a module-level ``CASES`` list). ``test_battery.py``
runs every check below on every case, on every backend; adding a loss means
adding rows, never new test logic.

Inputs are built by ``case.make(rng, n)`` as float64 numpy arrays (guesses may
be an array, a tuple of arrays, a list of arrays or a ``Ragged``; truths may
be arrays, tuples, lists of labels or lists of arrays). The battery casts the
float arrays to the dtype under test and moves them to the backend.

Gradient conventions (``case.gradient``):

* ``"exact"``: the gradient is d(loss)/d(guesses); checked by central
  differences on the guesses.
* ``"logits"``: guesses are probabilities p = softmax(z) (last axis); the
  gradient is d(loss)/dz, checked by differences on z = log(p).
* ``"none"``: no finite-difference check (the case must say why in ``why``).
"""
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy
from thinc.api import registry
from thinc.types import Ragged

from conftest import to_numpy


@dataclass
class Case:
    name: str  # registered name, e.g. "SparseCategoricalCrossentropy.v4"
    make: Callable[[numpy.random.Generator, int], Tuple[Any, Any]]
    settings: Dict[str, Any] = field(default_factory=dict)
    id: str = "default"
    gradient: str = "exact"  # "exact", "logits" or "none"
    why: str = ""  # reason when gradient == "none"
    n: int = 6  # examples made for the checks
    # A slow float64 reference: (guesses, truths, settings) -> per-example losses (N,)
    reference: Optional[Callable[[Any, Any, Dict[str, Any]], Any]] = None
    dtypes: Sequence[str] = ("float32", "float64")
    # Examples are rows of the arrays (True), or elements of a list (sequences).
    permutable: bool = True
    # Per-example sample weights apply (shape (N,)).
    weightable: bool = True
    # normalize divides the reported loss by N (the Sequence family's v4
    # semantics report the sum of per-sequence losses and divide only the gradient).
    loss_normalized: bool = True
    # normalize also divides example i's loss and gradient by normalize_divisor(truths)[i]
    # (CTC divides each sequence by its label length, PyTorch's reduction="mean").
    normalize_divisor: Optional[Callable[[Any], Any]] = None
    fd_rtol: float = 1e-4
    fd_atol: float = 1e-6

    @property
    def key(self) -> str:
        return f"{self.name}[{self.id}]"

    def build(self, **overrides):
        return registry.resolve({"loss": {"@losses": self.name, **self.settings, **overrides}})["loss"]


# Structures -------------------------------------------------------------


def tree_map(fn, obj):
    """Apply ``fn`` to every float array in a guesses/truths structure."""
    if isinstance(obj, Ragged):
        return Ragged(fn(obj.dataXd), obj.lengths)
    if isinstance(obj, tuple):
        return tuple(tree_map(fn, o) for o in obj)
    if isinstance(obj, list):
        return [tree_map(fn, o) for o in obj]
    if hasattr(obj, "dtype") and getattr(obj.dtype, "kind", "") == "f":
        return fn(obj)
    return obj


def leaves(obj):
    """The float arrays of a structure, in order."""
    out = []
    tree_map(lambda a: out.append(a) or a, obj)
    return out


def to_backend(obj, xp, dtype=None):
    """Move arrays (float and int) to ``xp``; cast float arrays to ``dtype``."""
    if isinstance(obj, Ragged):
        return Ragged(to_backend(obj.dataXd, xp, dtype), xp.asarray(to_numpy(obj.lengths)))
    if isinstance(obj, tuple):
        return tuple(to_backend(o, xp, dtype) for o in obj)
    if isinstance(obj, list):
        return [to_backend(o, xp, dtype) for o in obj]
    if hasattr(obj, "dtype") and hasattr(obj, "shape"):
        if obj.dtype.kind == "f" and dtype is not None:
            return xp.asarray(to_numpy(obj).astype(dtype))
        return xp.asarray(to_numpy(obj))
    return obj


def to_host(obj):
    return tree_map(lambda a: to_numpy(a).astype("float64"), obj) if obj is not None else None


def take(obj, idx):
    """Select examples ``idx`` (rows of arrays, items of lists) from a structure."""
    if obj is None:  # no truths (e.g. TripletMargin: a triplet carries its own targets)
        return None
    if isinstance(obj, tuple):
        return tuple(take(o, idx) for o in obj)
    if isinstance(obj, list):
        return [obj[i] for i in idx]
    return obj[numpy.asarray(idx, dtype="int64")]


def inputs(case: Case, xp, dtype="float64", n=None, seed=0):
    rng = numpy.random.default_rng(seed)
    guesses, truths = case.make(rng, case.n if n is None else n)
    return to_backend(guesses, xp, dtype), to_backend(truths, xp, dtype)


def snapshot(obj):
    """A host copy of every array (float and int) for mutation checks."""
    if isinstance(obj, Ragged):
        return ("ragged", to_numpy(obj.dataXd).copy(), to_numpy(obj.lengths).copy())
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, [snapshot(o) for o in obj])
    if hasattr(obj, "dtype") and hasattr(obj, "shape"):
        return to_numpy(obj).copy()
    return obj


def same(a, b) -> bool:
    """Bitwise equality of two snapshots."""
    if isinstance(a, numpy.ndarray):
        return isinstance(b, numpy.ndarray) and a.dtype == b.dtype and a.shape == b.shape and (
            a.tobytes() == b.tobytes()
        )
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return all(same(x, y) for x, y in zip(a, b))
    return a == b


def per_example_array(per_example):
    """Per-example losses as one float64 host array (lists are concatenated)."""
    if isinstance(per_example, list):
        if not per_example:
            return numpy.zeros((0,))
        return numpy.concatenate([to_numpy(p).reshape(-1).astype("float64") for p in per_example])
    return to_numpy(per_example).astype("float64")


# Finite differences --------------------------------------------------------


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = numpy.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def numeric_gradient(case: Case, loss_fn, guesses, *, n_coords=40, h=1e-6, seed=0):
    """Central differences of ``loss_fn`` at sampled coordinates of each leaf.

    For ``case.gradient == "logits"`` the variable is z = log(p) and the loss
    is evaluated at softmax(z). Returns a list of (leaf index, flat index, value).
    """
    rng = numpy.random.default_rng(seed)
    host = to_host(guesses)
    variables = leaves(host)
    if case.gradient == "logits":
        variables = [numpy.log(v) for v in variables]
    results = []
    for li, var in enumerate(variables):
        flat = numpy.arange(var.size)
        chosen = flat if var.size <= n_coords else rng.choice(flat, n_coords, replace=False)
        for k in chosen:
            values = []
            for sign in (1, -1):
                moved = [v.copy() for v in variables]
                moved[li].reshape(-1)[k] += sign * h
                if case.gradient == "logits":
                    moved = [_softmax(m) for m in moved]
                values.append(loss_fn(_rebuild(host, moved)))
            results.append((li, int(k), (values[0] - values[1]) / (2 * h)))
    return results


def _rebuild(template, new_leaves):
    it = iter(new_leaves)
    return tree_map(lambda _: next(it), template)


def assert_loss_and_grad_close(a, b, *, rtol, atol):
    """Compare two (grad, loss) results structurally."""
    (grad_a, loss_a), (grad_b, loss_b) = a, b
    numpy.testing.assert_allclose(loss_a, loss_b, rtol=rtol, atol=atol)
    for x, y in zip(leaves(to_host(grad_a)), leaves(to_host(grad_b)), strict=True):
        numpy.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def pickled(obj):
    return pickle.loads(pickle.dumps(obj))


def call_memory_ratio(loss_calc, guesses, truths) -> float:
    """Peak ``tracemalloc`` memory of one warm ``loss_calc(guesses, truths)`` over the bytes of
    its gradient (a tuple's summed): SPEC section 8's memory bound, as the benchmark measures it."""
    import gc
    import tracemalloc

    loss_calc(guesses, truths)  # warm caches
    gc.collect()
    tracemalloc.start()
    try:
        grad, _ = loss_calc(guesses, truths)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / sum(leaf.nbytes for leaf in leaves(grad))
