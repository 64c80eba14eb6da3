"""The base every calculator derives from, its public result, and the reductions.

A calculator is a thin class: its ``__init__`` validates and stores
keyword-only settings; one plain maths function computes the gradient and
the per-example losses *together*. The base class turns that into Thinc's
``Loss`` API:

* ``__call__(guesses, truths, *, sample_weight=None) -> (grad, loss)``
* ``get_grad``, ``get_loss`` and ``get_loss_per_example`` (same keyword),

all four through one public hook, :meth:`LossCalculator.evaluate`, which
returns an :class:`Evaluation`: the gradient (already divided), the
unnormalised per-example losses and the divisor of each example. The
reported loss is always ``sum_i per_example[i] / divisor[i]``, reduced in
float64 with a single device-to-host transfer. ``get_loss_per_element``
(PyTorch's ``reduction="none"``) goes through
:meth:`LossCalculator.evaluate_per_element`, which asks :meth:`evaluate` too.

Most calculators implement only :meth:`LossCalculator.compute`; the base
counts the examples (rows, or sequences of a ``Ragged``), derives the
divisor from ``normalize`` and wraps a ``Ragged`` gradient. A calculator
whose divisors depend on the truths (CTC divides each sequence by its label
length, ``CosineDistance`` with ``ignore_zeros`` counts the non-zero rows)
or whose examples are not rows (sequence losses, weighted sums) implements
:meth:`LossCalculator.evaluate` itself and states its divisors in the result.
"""
import inspect
import math
from typing import Any, ClassVar, NamedTuple, Optional, Tuple

import numpy
from thinc.backends import get_array_ops
from thinc.loss import Loss
from thinc.types import Padded, Ragged

from ._checks import call_error, check_bool, check_float, setting_error


#: ``reduction``: how ``normalize = true`` divides (``normalize = false`` always sums).
#:
#: * ``"examples"``: by N, the number of examples (Thinc; PyTorch's ``"sum"`` / N,
#:   which is its ``"mean"`` for one loss per row);
#: * ``"elements"``: by the number of loss terms, N x C for elementwise losses
#:   (PyTorch's and Keras' ``"mean"`` of MSE, L1, BCE, Huber, ...), N for row losses;
#: * ``"weights"``: by the sum of the examples' weights, the class weight of each
#:   label times its sample weight (PyTorch's weighted cross-entropy ``"mean"``).
EXAMPLES, ELEMENTS, WEIGHTS = "examples", "elements", "weights"
REDUCTIONS = (EXAMPLES, ELEMENTS, WEIGHTS)


class Evaluation(NamedTuple):
    """What one evaluation of a calculator produces.

    ``grad``: the gradient in the guesses' container, already divided by the
    divisors (``None`` when it was not asked for). ``per_example``: the
    unnormalised loss of each example, an ``(N,)`` array (or, for sequence
    losses, a list of arrays). ``divisor``: a number, a 0-d device array, or
    an ``(N,)`` device array with one divisor per example.
    """

    grad: Any
    per_example: Any
    divisor: Any = 1

    def loss(self) -> float:
        """``sum_i per_example[i] / divisor[i]`` as a Python float (one transfer)."""
        return reduce_loss(self.per_example, self.divisor)

    def scaled(self, factor: float) -> "Evaluation":
        """This evaluation with the gradient and the per-example losses times ``factor``."""
        if factor == 1.0:
            return self
        return Evaluation(scale_tree(self.grad, factor), scale_tree(self.per_example, factor), self.divisor)


def scale_tree(tree: Any, factor: float) -> Any:
    """A new array, or container of arrays (tuple, list, dict, Ragged, Padded), times ``factor``."""
    if tree is None:
        return None
    if isinstance(tree, Ragged):
        return Ragged(tree.dataXd * factor, tree.lengths)
    if isinstance(tree, Padded):
        return Padded(tree.data * factor, tree.size_at_t, tree.lengths, tree.indices)
    if isinstance(tree, (tuple, list)):
        return type(tree)(scale_tree(t, factor) for t in tree)
    if isinstance(tree, dict):
        return {k: scale_tree(v, factor) for k, v in tree.items()}
    return tree * factor


def reduce_loss(per_example: Any, divisor: Any = 1) -> float:
    """Sum per-example losses in float64 and divide; ``0.0`` for no examples."""
    if isinstance(per_example, list):
        if not per_example:
            return 0.0
        xp = get_array_ops(per_example[0]).xp
        per_example = xp.concatenate([p.reshape(-1) for p in per_example])
    if per_example.size == 0:
        return 0.0
    if isinstance(divisor, (int, float)):
        return float(float(per_example.sum(dtype=numpy.float64)) / divisor)  # a float, even for numpy divisors
    if divisor.ndim == 0:
        return float(per_example.sum(dtype=numpy.float64) / divisor)
    return float((per_example.astype(numpy.float64) / divisor).sum())


class LossCalculator(Loss):
    """The base of every calculator: settings, the Loss API, normalisation.

    To write a calculator, set ``name`` (every error message names it) and
    implement :meth:`compute` (or, for divisors of your own,
    :meth:`evaluate`). Set ``accepts_ragged = True`` to take ``Ragged``
    guesses, whose examples (for ``normalize``) are the sequences, and
    ``softmax_family = True`` when, given probabilities, the gradient is
    taken with respect to the logits (what Thinc's ``Softmax`` layer expects).

    Unreduced losses, PyTorch's ``reduction="none"``:
    :meth:`get_loss_per_example` gives one loss per example (row, or
    sequence), :meth:`get_loss_per_element` one per loss term: the
    guesses' shape for an :attr:`elementwise` calculator, whose entries sum
    over each row to that row's per-example loss; for any other calculator
    it is the per-example loss, as PyTorch's ``cross_entropy(...,
    reduction="none")`` gives ``(N,)``. Neither is divided by ``normalize``;
    both are times ``weight`` and ``sample_weight``, and 0 where masked.
    """

    name: ClassVar[str] = "LossCalculator"
    accepts_ragged: ClassVar[bool] = False
    #: Scores softmax outputs; given probabilities, the gradient is w.r.t. the logits.
    softmax_family: ClassVar[bool] = False
    #: Takes truths as a list of labels (names, ``missing_value``, ``neg_prefix``): spaCy's token classifiers pass them.
    takes_labels: ClassVar[bool] = False
    #: One loss term per element of the guesses (``reduction = "elements"``
    #: divides by N x C); otherwise one term per example (row).
    elementwise: ClassVar[bool] = False
    #: The ``reduction`` values this calculator takes (see :data:`REDUCTIONS`).
    reductions: ClassVar[Tuple[str, ...]] = (EXAMPLES, ELEMENTS)

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = EXAMPLES):
        self.normalize = check_bool(self.name, "normalize", normalize)
        self.weight = check_weight(self.name, weight)
        if reduction not in self.reductions:
            raise setting_error(
                self.name, "reduction", f"must be one of {list(self.reductions)} for this loss, got {reduction!r}"
            )
        self.reduction = reduction

    # The Loss API ------------------------------------------------------

    def __call__(self, guesses, truths, *, sample_weight=None) -> Tuple[Any, float]:
        """Return ``(gradient, loss)``, computed in one pass."""
        result = self.weighted_evaluation(guesses, truths, sample_weight=sample_weight, want_grad=True)
        return result.grad, result.loss()

    def get_grad(self, guesses, truths, *, sample_weight=None):
        """Return the gradient (the class docstring says with respect to what)."""
        return self.weighted_evaluation(guesses, truths, sample_weight=sample_weight, want_grad=True).grad

    def get_loss(self, guesses, truths, *, sample_weight=None) -> float:
        """Return the loss as a Python float."""
        return self.weighted_evaluation(guesses, truths, sample_weight=sample_weight, want_grad=False).loss()

    def get_loss_per_example(self, guesses, truths, *, sample_weight=None):
        """Return the unnormalised loss of each example, shape ``(N,)``."""
        return self.weighted_evaluation(guesses, truths, sample_weight=sample_weight, want_grad=False).per_example

    def get_loss_per_element(self, guesses, truths, *, sample_weight=None):
        """Return the unreduced loss terms: PyTorch's ``reduction="none"``.

        For an :attr:`elementwise` calculator, an array of the guesses' shape
        (of the first guesses of a tuple, as ``(mean, var)``), one loss per
        element: summed over the columns of a row it is that row's
        :meth:`get_loss_per_example` (to rounding). For any other calculator,
        one loss per example: :meth:`get_loss_per_example` itself (``(N,)``,
        or a list for sequence losses), what PyTorch's ``cross_entropy``,
        ``nll_loss``, ``multi_margin_loss``, ``cosine_embedding_loss``,
        ``triplet_margin_loss`` and ``ctc_loss`` return with ``"none"``.

        Unnormalised (``normalize`` and ``reduction`` do not apply), times
        ``weight``, and times ``sample_weight`` (``(N,)`` and ``(N, 1)``
        weight each element of a row, an array of the guesses' shape each
        element), so that ``get_loss_per_element(g, t, sample_weight=s)``
        equals ``s * get_loss_per_element(g, t)``. Masked entries (truths
        equal to ``missing_value``) are 0. The dtype is that of the
        per-example losses, on the guesses' device.

        The terms come from :meth:`evaluate_per_element`.
        """
        per_element = self.evaluate_per_element(guesses, truths, sample_weight=sample_weight)
        weight = getattr(self, "weight", 1.0)  # calculators pickled before ``weight`` existed
        return per_element if weight == 1.0 else scale_tree(per_element, weight)

    def weighted_evaluation(self, guesses, truths, *, sample_weight=None, want_grad: bool = True) -> Evaluation:
        """:meth:`evaluate`, times the calculator's scalar ``weight`` (what the Loss API returns)."""
        weight = getattr(self, "weight", 1.0)  # calculators pickled before ``weight`` existed
        return self.evaluate(guesses, truths, sample_weight=sample_weight, want_grad=want_grad).scaled(weight)

    # The hooks ----------------------------------------------------------

    def evaluate(self, guesses, truths, *, sample_weight=None, want_grad: bool = True) -> Evaluation:
        """Gradient, per-example losses and divisors of one batch.

        The default counts the examples (:meth:`count_examples`, or the
        sequences of a ``Ragged``), divides by their number when
        ``normalize``, and calls :meth:`compute`.
        """
        lengths = None
        if isinstance(guesses, Ragged):
            if not self.accepts_ragged:
                raise call_error(self.name, "guesses", "must not be a Ragged", TypeError)
            lengths, n = ragged_lengths(self.name, guesses), len(guesses.lengths)
            guesses = guesses.dataXd
        else:
            n = self.count_examples(guesses)
        reduction = getattr(self, "reduction", EXAMPLES)
        divisor = 1
        if self.normalize and n > 0:
            divisor = n
            if reduction == ELEMENTS and self.elementwise:
                first = guesses[0] if isinstance(guesses, tuple) else guesses
                divisor = n * int(numpy.prod(first.shape[1:], dtype="int64"))
        if reduction == WEIGHTS and self.normalize:
            # The divisor depends on the labels' weights: divide after the fact.
            grad, per_example = self.compute(guesses, truths, sample_weight=sample_weight, divisor=1, want_grad=want_grad)
            total = self.weight_total(guesses, truths, sample_weight=sample_weight)
            xp = get_array_ops(per_example).xp
            divisor = xp.maximum(total, xp.finfo(per_example.dtype).tiny)
            if grad is not None:
                grad = grad / divisor.astype(grad.dtype)
        else:
            grad, per_example = self.compute(
                guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad
            )
        if lengths is not None and grad is not None:
            grad = Ragged(grad, lengths)
        return Evaluation(grad, per_example, divisor)

    def evaluate_per_element(self, guesses, truths, *, sample_weight=None):
        """The unreduced loss terms, before ``weight`` (see :meth:`get_loss_per_element`).

        A non-:attr:`elementwise` calculator has one term per example: its
        per-example losses. For an elementwise one the default asks
        :meth:`evaluate` for them one column at a time
        (:func:`probe_elements`): a ``sample_weight`` of the guesses' shape
        multiplies each term, so weights that are 0 outside column ``j`` give
        each row's term in column ``j``. That costs one evaluation (without
        gradient, with its checks' one device-to-host transfer) per column; a
        calculator that has its terms at hand may override this hook to
        return them in one pass.
        """
        if not self.elementwise:
            return self.evaluate(guesses, truths, sample_weight=sample_weight, want_grad=False).per_example
        return probe_elements(self, guesses, truths, sample_weight=sample_weight)

    def weight_total(self, guesses, truths, *, sample_weight=None):
        """The sum of the examples' weights (``reduction = "weights"``), a 0-d device array.

        Calculators with class-index targets define it: the class weight of
        each example's label times its sample weight, 0 for masked examples.
        """
        raise NotImplementedError(f"{type(self).__name__} has no weights to divide by")

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        """Return ``(grad / divisor or None, per_example_losses)``."""
        raise NotImplementedError(f"{type(self).__name__} implements neither compute nor evaluate")

    def count_examples(self, guesses) -> int:
        """The N that ``normalize`` divides by: rows of the guesses by default."""
        first = guesses[0] if isinstance(guesses, tuple) and guesses else guesses
        shape = getattr(first, "shape", None)
        if shape is None:
            if not hasattr(first, "__len__"):
                raise call_error(self.name, "guesses", f"must be an array, got {type(first).__name__}", TypeError)
            return len(first)
        if len(shape) == 0:
            raise call_error(self.name, "guesses", "must have one row per example, got a 0-d array")
        return int(shape[0])

    def __repr__(self) -> str:
        """The class and its settings, as the constructor takes them."""
        params = inspect.signature(type(self).__init__).parameters
        settings = ", ".join(
            f"{k}={getattr(self, k)!r}" for k, p in params.items() if p.kind is p.KEYWORD_ONLY and hasattr(self, k)
        )
        return f"{type(self).__name__}({settings})"


def probe_elements(calc: LossCalculator, guesses, truths, *, sample_weight=None):
    """The per-element losses of an elementwise ``calc``, in the guesses' shape, through :meth:`~LossCalculator.evaluate`.

    The elements are those of the guesses (the first array of a tuple, the
    data of a ``Ragged``): ``N`` rows of ``K`` entries (the trailing axes,
    flattened). With ``sample_weight`` ``s`` (``(N,)``, ``(N, 1)`` or that
    shape), column ``j`` is the per-example loss under the weights that are
    ``s`` on column ``j`` and 0 elsewhere: ``K`` evaluations, none for
    ``K = 1``, where the per-example losses are the terms.
    """
    first = guesses[0] if isinstance(guesses, tuple) and guesses else guesses
    if isinstance(first, Ragged):
        first = first.dataXd
    shape = tuple(getattr(first, "shape", ()))

    def rows(weights):
        return calc.evaluate(guesses, truths, sample_weight=weights, want_grad=False).per_example

    if len(shape) < 2 or int(numpy.prod(shape[1:], dtype="int64")) == 1 or 0 in shape:
        per_example = rows(sample_weight)
        if len(shape) < 1:
            return per_example
        if 0 in shape:
            return get_array_ops(per_example).xp.zeros(shape, dtype=per_example.dtype)
        return per_example.reshape(shape)
    xp = get_array_ops(first).xp
    n, k = shape[0], int(numpy.prod(shape[1:], dtype="int64"))
    scale = element_weights(calc, guesses, truths, sample_weight, shape, xp)
    out = None
    for j in range(k):
        probe = xp.zeros((n, k), dtype=first.dtype if scale is None else scale.dtype)
        probe[:, j] = 1.0 if scale is None else scale[:, j]
        per_example = rows(probe.reshape(shape))
        if out is None:
            out = xp.empty((n, k), dtype=per_example.dtype)
        out[:, j] = per_example.reshape(n)
    return out.reshape(shape)


def element_weights(calc: LossCalculator, guesses, truths, sample_weight, shape: Tuple[int, ...], xp):
    """``sample_weight`` (``(N,)``, ``(N, 1)`` or ``shape``) as an ``(N, K)`` array, or None;
    a weight the calculator refuses is refused by its own :meth:`~LossCalculator.evaluate`."""
    if sample_weight is None:
        return None
    n, k = shape[0], int(numpy.prod(shape[1:], dtype="int64"))
    per_row = ((n,), (n, 1), (n,) + (1,) * (len(shape) - 1))
    weights = sample_weight
    if not (isinstance(weights, xp.ndarray) and weights.dtype.kind in "fiu" and weights.shape in per_row + (shape,)):
        calc.evaluate(guesses, truths, sample_weight=sample_weight, want_grad=False)  # its own error, if any
        weights = xp.asarray(sample_weight, dtype="float64")
    if weights.shape in per_row:
        return xp.broadcast_to(weights.reshape(n, 1), (n, k))
    if weights.shape == shape:
        return weights.reshape(n, k)
    raise call_error(calc.name, "sample_weight", f"must have shape {(n,)}, {(n, 1)} or {shape}, got {tuple(weights.shape)}")


def check_weight(name: str, weight: Any) -> float:
    """The scalar ``weight`` of a calculator: finite and non-negative (Gluon's ``Loss(weight=...)``)."""
    return check_float(name, "weight", weight, low=0.0, high=float("inf"), high_open=True)


def ragged_lengths(name: str, ragged: Ragged):
    """The lengths of a ``Ragged``, refusing lengths that do not add up to its rows."""
    lengths = ragged.lengths
    data = ragged.dataXd
    host = lengths.get() if hasattr(lengths, "get") else numpy.asarray(lengths)
    if host.dtype.kind not in "iu" or host.ndim != 1:
        raise call_error(name, "guesses", f"is a Ragged whose lengths are not a 1-d int array ({host.dtype}, shape {host.shape})", TypeError)
    n_rows = int(data.shape[0]) if getattr(data, "ndim", 0) else 0
    if (host < 0).any() or int(host.sum()) != n_rows:
        raise call_error(
            name, "guesses", f"is a Ragged whose lengths add up to {int(host.sum())}, but its data has {n_rows} rows"
        )
    return lengths


# Reductions shared by the elementwise families -----------------------------


def exact_reciprocal(divisor: float) -> Optional[float]:
    """``1 / divisor`` where multiplying by it gives the bits of dividing by ``divisor``, else None.

    That is where ``divisor`` is a power of two (then ``1 / divisor`` is exact and
    ``x * (1 / divisor)`` is the correctly rounded ``x / divisor``, subnormals
    included): batch sizes often are, and a product is cheaper than a division.

    >>> exact_reciprocal(4096), exact_reciprocal(3), exact_reciprocal(0.5)
    (0.000244140625, None, 2.0)
    """
    if not divisor or not math.isfinite(divisor):
        return None
    mantissa, exponent = math.frexp(divisor)
    if abs(mantissa) != 0.5 or not -126 <= exponent - 1 <= 126:  # divisor and 1 / divisor normal in float32
        return None
    return 1.0 / divisor


def divide_by(xp, x, divisor: float, out=None):
    """``x / divisor`` (into ``out``), bit for bit, as a product when :func:`exact_reciprocal` allows
    (float32 and float64 only: a float16 division rounds the divisor to float16 first)."""
    inverse = exact_reciprocal(divisor) if x.dtype.itemsize >= 4 else None
    if inverse is None:
        return xp.divide(x, divisor, out=out)
    return xp.multiply(x, inverse, out=out)


def scale_grad(grad, weights, divisor: float):
    """Weight an elementwise gradient and divide it by ``divisor``, in place."""
    if weights is not None:
        grad *= weights
    if divisor != 1:
        divide_by(get_array_ops(grad).xp, grad, divisor, out=grad)
    return grad


def row_sum(x, weights=None):
    """Per-example ``sum(x * weights)`` over the columns of a row (2-d), or the
    value itself (1-d), without an ``(N, C)`` temporary. ``weights``: None,
    ``x``'s shape, or one per row (``(N, 1)`` or ``(N,)``)."""
    xp = get_array_ops(x).xp
    if x.ndim == 1:
        return x if weights is None else x * weights.reshape(x.shape)
    if weights is None:
        return xp.einsum("ij->i", x)
    if weights.shape == x.shape:
        return xp.einsum("ij,ij->i", x, weights)
    return xp.einsum("ij->i", x) * weights.reshape(-1)


def elementwise_result(loss, grad: Optional[Any], weights, divisor: float):
    """``(grad * weights / divisor, row sums of loss * weights)`` for an elementwise loss."""
    if grad is not None:
        grad = scale_grad(grad, weights, divisor)
    return grad, row_sum(loss, weights)
