"""The package's test battery, for any loss calculator (yours included).

:func:`check_loss` runs the checks every calculator of this package passes
and raises ``AssertionError`` naming the property that failed, so that it
can be called from your own pytest suite::

    >>> import numpy
    >>> from thinc_losses_plus import L2Distance
    >>> from thinc_losses_plus.testing import check_loss
    >>> rng = numpy.random.default_rng(0)
    >>> check_loss(L2Distance(), rng.normal(size=(5, 3)), rng.normal(size=(5, 3)))

Properties checked (each name appears in the error message):

* ``api``: ``__call__`` returns ``(grad, loss)`` equal to ``get_grad`` and
  ``get_loss``; the loss is a finite Python ``float``;
* ``gradient-type``: the gradient has the guesses' type, shape and dtype;
* ``no-mutation`` and ``determinism``: inputs unchanged, same bits twice;
* ``finite-differences``: the gradient matches central differences of
  ``get_loss`` in the declared convention: ``"exact"`` (d loss / d guesses)
  or ``"logits"`` (guesses are ``softmax(z)`` over the last axis; the
  gradient is d loss / d z, Thinc's ``Softmax`` convention);
* ``dtypes``: float32 and float64 guesses agree;
* ``layout``: Fortran-ordered, negatively strided and sliced guesses give
  the bits of a C-contiguous copy;
* ``per-example``: ``get_loss_per_example`` has one entry per example and
  sums to the unnormalised loss (if the calculator has it);
* ``per-element``: ``get_loss_per_element`` (PyTorch's ``reduction="none"``),
  for a calculator with ``elementwise = True``, has the guesses' shape, its
  rows sum to the per-example losses and a ``sample_weight`` of the guesses'
  shape multiplies each term; for any other, it is the per-example losses
  (if the calculator has it);
* ``sample-weight``: weights of one equal no weights, and per-example weights
  scale the per-example losses (if the calculator takes ``sample_weight``);
* ``empty-batch``: N = 0 gives loss 0.0 and an empty gradient;
* ``pickle``: a pickled copy gives the same bits.
"""
import inspect
import pickle
from typing import Any, Callable, List, Optional

import numpy

__all__ = ["check_loss"]


def check_loss(
    calculator,
    guesses,
    truths,
    *,
    gradient: str = "exact",
    rtol: float = 1e-4,
    atol: float = 1e-6,
    n_coordinates: int = 30,
    unnormalised: Optional[Any] = None,
) -> None:
    """Run the battery on ``calculator`` at ``guesses`` (an array or a tuple of
    arrays, one row per example, float64 preferred) and ``truths`` (an array or
    a list, one entry per example, or None).

    ``gradient`` is the declared convention: ``"exact"``, ``"logits"``, or
    ``"none"`` to skip the finite differences. ``unnormalised``: the same
    calculator with ``normalize=False`` (for the per-example check; derived
    with ``type(calculator)(normalize=False)`` when that works).
    Raises ``AssertionError("<property>: ...")`` on the first failure.
    """
    if gradient not in ("exact", "logits", "none"):
        raise ValueError(f"check_loss: 'gradient' must be 'exact', 'logits' or 'none', got {gradient!r}")
    guesses = _tree(lambda a: numpy.asarray(a, dtype="float64"), guesses)
    n = _n_examples(guesses)
    _check_no_mutation_and_determinism(calculator, guesses, truths)
    _check_api(calculator, guesses, truths)
    if gradient != "none":
        _check_finite_differences(calculator, guesses, truths, gradient, rtol, atol, n_coordinates)
    _check_dtypes(calculator, guesses, truths)
    _check_layout(calculator, guesses, truths)
    if unnormalised is None:
        unnormalised = _unnormalised(calculator)
    if unnormalised is not None and hasattr(unnormalised, "get_loss_per_example"):
        _check_per_example(unnormalised, guesses, truths, n)
        weightable = "sample_weight" in inspect.signature(unnormalised.__call__).parameters
        if hasattr(unnormalised, "get_loss_per_element"):
            _check_per_element(unnormalised, guesses, truths, n, weightable)
        if weightable:
            _check_sample_weight(unnormalised, guesses, truths, n)
    _check_empty_batch(calculator, guesses, truths)
    _check_pickle(calculator, guesses, truths)


# The checks -----------------------------------------------------------------


def _check_api(calc, guesses, truths) -> None:
    grad, loss = calc(guesses, truths)
    _require(isinstance(loss, float), "api", f"the loss must be a Python float, got {type(loss).__name__}")
    _require(numpy.isfinite(loss), "api", f"the loss is not finite: {loss}")
    _require(_same(calc.get_grad(guesses, truths), grad), "api", "get_grad differs from __call__'s gradient")
    _require(calc.get_loss(guesses, truths) == loss, "api", "get_loss differs from __call__'s loss")
    _require(type(grad) is type(guesses), "gradient-type", f"gradient is a {type(grad).__name__}, guesses a {type(guesses).__name__}")
    for g, x in zip(_leaves(grad), _leaves(guesses), strict=True):
        _require(g.shape == x.shape, "gradient-type", f"gradient shape {g.shape} differs from the guesses' {x.shape}")
        _require(g.dtype == x.dtype, "gradient-type", f"gradient dtype {g.dtype} differs from the guesses' {x.dtype}")
        _require(bool(numpy.isfinite(g).all()), "gradient-type", "the gradient is not finite")


def _check_no_mutation_and_determinism(calc, guesses, truths) -> None:
    before = _snapshot(guesses), _snapshot(truths)
    first = calc(guesses, truths)
    _require(_snapshot(guesses) == before[0] and _snapshot(truths) == before[1], "no-mutation", "the inputs were changed")
    second = calc(guesses, truths)
    _require(_same(first[0], second[0]) and first[1] == second[1], "determinism", "two calls gave different bits")


def _check_finite_differences(calc, guesses, truths, gradient, rtol, atol, n_coordinates) -> None:
    grad = [numpy.asarray(g, dtype="float64") for g in _leaves(calc.get_grad(guesses, truths))]
    variables = [numpy.log(v) if gradient == "logits" else v.copy() for v in _leaves(guesses)]
    rng = numpy.random.default_rng(0)
    h = 1e-6
    for leaf, var in enumerate(variables):
        picks = numpy.arange(var.size) if var.size <= n_coordinates else rng.choice(var.size, n_coordinates, replace=False)
        for k in picks:
            values = []
            for sign in (1.0, -1.0):
                moved = [v.copy() for v in variables]
                moved[leaf].reshape(-1)[k] += sign * h
                if gradient == "logits":
                    moved = [_softmax(m) for m in moved]
                values.append(calc.get_loss(_rebuild(guesses, moved), truths))
            numeric = (values[0] - values[1]) / (2 * h)
            analytic = grad[leaf].reshape(-1)[k]
            _require(
                abs(analytic - numeric) <= atol + rtol * abs(numeric),
                "finite-differences",
                f"d loss / d guesses{'' if len(variables) == 1 else f'[{leaf}]'}.flat[{k}] ({gradient} convention): "
                f"the gradient says {analytic:.8g}, central differences {numeric:.8g}",
            )


def _check_dtypes(calc, guesses, truths) -> None:
    grad64, loss64 = calc(guesses, truths)
    truths32 = truths.astype("float32") if getattr(getattr(truths, "dtype", None), "kind", "") == "f" else truths
    grad32, loss32 = calc(_tree(lambda a: a.astype("float32"), guesses), truths32)
    _require(numpy.isclose(loss32, loss64, rtol=1e-3, atol=1e-4), "dtypes", f"float32 loss {loss32} vs float64 {loss64}")
    for a, b in zip(_leaves(grad32), _leaves(grad64)):
        _require(a.dtype == numpy.float32, "dtypes", f"float32 guesses gave a {a.dtype} gradient")
        _require(numpy.allclose(a, b, rtol=1e-3, atol=1e-4), "dtypes", "float32 and float64 gradients disagree")


def _check_layout(calc, guesses, truths) -> None:
    expected = calc(guesses, truths)
    for name, transform in _LAYOUTS.items():
        odd = _tree(transform, guesses)
        got = calc(odd, truths)
        _require(_same(got[0], expected[0]) and got[1] == expected[1], "layout", f"{name} guesses change the bits")


def _check_per_example(calc, guesses, truths, n) -> None:
    per_example = calc.get_loss_per_example(guesses, truths)
    values = _flat(per_example)
    count = len(per_example) if isinstance(per_example, list) else numpy.asarray(per_example).shape[0]
    _require(count == n, "per-example", f"{count} per-example losses for {n} examples")
    loss = calc.get_loss(guesses, truths)
    _require(numpy.isclose(values.sum(), loss, rtol=1e-9, atol=1e-12), "per-example", f"they sum to {values.sum()}, the loss is {loss}")


def _check_per_element(calc, guesses, truths, n, weightable) -> None:
    per_element = calc.get_loss_per_element(guesses, truths)
    per_example = calc.get_loss_per_example(guesses, truths)
    if not getattr(calc, "elementwise", False):
        _require(_same(per_element, per_example), "per-element", "a loss of one term per example must give its per-example losses")
        return
    shape = _leaves(guesses)[0].shape
    _require(
        getattr(per_element, "shape", None) == shape,
        "per-element",
        f"an elementwise loss must give one term per element of the guesses {shape}, got {getattr(per_element, 'shape', type(per_element).__name__)}",
    )
    values = numpy.asarray(per_element, dtype="float64")
    rows = values.reshape(n, -1).sum(axis=1)
    _require(
        numpy.allclose(rows, _flat(per_example), rtol=1e-9, atol=1e-12),
        "per-element",
        "the terms of a row must sum to its per-example loss",
    )
    if weightable and n:
        mask = numpy.random.default_rng(2).uniform(size=shape) < 0.5
        weighted = numpy.asarray(calc.get_loss_per_element(guesses, truths, sample_weight=mask.astype("float64")), dtype="float64")
        _require(
            numpy.allclose(weighted, values * mask, rtol=1e-9, atol=1e-12),
            "per-element",
            "a sample_weight of the guesses' shape must multiply each term",
        )


def _check_sample_weight(calc, guesses, truths, n) -> None:
    plain = calc(guesses, truths)
    ones = calc(guesses, truths, sample_weight=numpy.ones((n,)))
    _require(_close(plain, ones), "sample-weight", "weights of one change the result")
    weights = numpy.random.default_rng(1).uniform(0.0, 2.0, size=n)
    weighted = _flat(calc.get_loss_per_example(guesses, truths, sample_weight=weights))
    unweighted = _flat(calc.get_loss_per_example(guesses, truths))
    _require(
        numpy.allclose(weighted, unweighted * weights, rtol=1e-9, atol=1e-12),
        "sample-weight",
        "per-example weights must multiply the per-example losses",
    )


def _check_empty_batch(calc, guesses, truths) -> None:
    empty_truths = truths[:0] if truths is not None else None
    grad, loss = calc(_tree(lambda a: a[:0], guesses), empty_truths)
    _require(loss == 0.0 and isinstance(loss, float), "empty-batch", f"N = 0 gives loss {loss!r}, not 0.0")
    _require(all(g.size == 0 for g in _leaves(grad)), "empty-batch", "N = 0 gives a non-empty gradient")


def _check_pickle(calc, guesses, truths) -> None:
    clone = pickle.loads(pickle.dumps(calc))
    _require(_same(clone(guesses, truths)[0], calc(guesses, truths)[0]), "pickle", "a pickled copy gives other bits")


# Helpers ---------------------------------------------------------------------

_LAYOUTS = {
    "Fortran-ordered": lambda a: numpy.asfortranarray(a),
    "negatively strided": lambda a: numpy.ascontiguousarray(a[::-1])[::-1],
    "sliced": lambda a: _sliced(a),
}


def _sliced(a):
    wide = numpy.zeros(a.shape[:-1] + (a.shape[-1] * 2,), dtype=a.dtype) if a.ndim else a
    if a.ndim == 0:
        return a
    wide[..., ::2] = a
    return wide[..., ::2]


def _require(condition, prop: str, message: str) -> None:
    if not condition:
        raise AssertionError(f"{prop}: {message}")


def _tree(fn: Callable, obj):
    if isinstance(obj, tuple):
        return tuple(_tree(fn, o) for o in obj)
    return fn(obj)


def _leaves(obj) -> List[Any]:
    if isinstance(obj, (tuple, list)):
        return [leaf for o in obj for leaf in _leaves(o)]
    return [obj]


def _rebuild(template, new_leaves):
    it = iter(new_leaves)
    return _tree(lambda _: next(it), template)


def _n_examples(guesses) -> int:
    return int(_leaves(guesses)[0].shape[0])


def _softmax(z):
    e = numpy.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _snapshot(obj):
    if isinstance(obj, (tuple, list)):
        return [type(obj).__name__] + [_snapshot(o) for o in obj]
    if hasattr(obj, "tobytes"):
        return (str(obj.dtype), obj.shape, obj.tobytes())
    return obj


def _same(a, b) -> bool:
    return _snapshot(a) == _snapshot(b)


def _close(a, b) -> bool:
    (grad_a, loss_a), (grad_b, loss_b) = a, b
    return numpy.isclose(loss_a, loss_b, rtol=1e-12, atol=1e-12) and all(
        numpy.allclose(x, y, rtol=1e-12, atol=1e-12) for x, y in zip(_leaves(grad_a), _leaves(grad_b))
    )


def _flat(per_example):
    if isinstance(per_example, list):
        return numpy.concatenate([numpy.asarray(p, dtype="float64").reshape(-1) for p in per_example]) if per_example else numpy.zeros((0,))
    return numpy.asarray(per_example, dtype="float64")


def _unnormalised(calc):
    """The calculator with ``normalize=False`` and its other settings, if it can be rebuilt."""
    if not getattr(calc, "normalize", True):
        return calc
    try:
        params = inspect.signature(type(calc).__init__).parameters
        settings = {k: getattr(calc, k) for k, p in params.items() if p.kind is p.KEYWORD_ONLY and hasattr(calc, k)}
        settings["normalize"] = False
        return type(calc)(**settings)
    except Exception:  # a calculator that cannot be rebuilt from its attributes
        return None
