"""The base every calculator of this package derives from.

A calculator is a thin class: its ``__init__`` validates and stores
keyword-only settings, its :meth:`LossCalculator.compute` converts the truths
and calls one plain maths function that returns the gradient and the
per-example losses *together*. The base class turns that into Thinc's
``Loss`` API:

* ``__call__(guesses, truths, *, sample_weight=None) -> (grad, loss)``
* ``get_grad``, ``get_loss`` and ``get_loss_per_example`` (same keyword),

and owns what all calculators share: ``normalize`` (divide loss and
gradient by the number of examples), ``Ragged`` guesses (examples are the
sequences), the reduction of per-example losses to one Python ``float``
accumulated in float64, and the ``N = 0`` case.
"""
from typing import Any, ClassVar, NamedTuple, Tuple

import numpy
from thinc.loss import Loss
from thinc.types import Ragged

from ._checks import call_error, check_bool


class Evaluation(NamedTuple):
    grad: Any  # the gradient, already divided by ``divisor``; None if not wanted
    per_example: Any  # unnormalised loss of each example (array, or list for sequences)
    divisor: float  # N when normalize, else 1


class LossCalculator(Loss):
    """Shared machinery: settings, normalisation, Ragged guesses, reduction.

    Subclasses set ``name`` (used in every error message) and implement
    :meth:`compute`. They may set ``accepts_ragged = True`` to take
    ``Ragged`` guesses, whose examples (for ``normalize``) are the sequences,
    and ``softmax_family = True`` when, given probabilities, their gradient
    is taken w.r.t. the logits (what Thinc's ``Softmax`` layer expects).
    """

    name: ClassVar[str] = "LossCalculator"
    accepts_ragged: ClassVar[bool] = False
    #: Scores softmax outputs; given probabilities, the gradient is w.r.t. the logits.
    softmax_family: ClassVar[bool] = False

    def __init__(self, *, normalize: bool = True):
        self.normalize = check_bool(self.name, "normalize", normalize)

    # The Loss API ------------------------------------------------------

    def __call__(self, guesses, truths, *, sample_weight=None) -> Tuple[Any, float]:
        """Return ``(gradient, loss)``, computed in one pass."""
        result = self._evaluate(guesses, truths, sample_weight, want_grad=True)
        return result.grad, self._reduce(result)

    def get_grad(self, guesses, truths, *, sample_weight=None):
        """Return the gradient (see the class docstring for what it is taken with respect to)."""
        return self._evaluate(guesses, truths, sample_weight, want_grad=True).grad

    def get_loss(self, guesses, truths, *, sample_weight=None) -> float:
        """Return the loss as a Python float."""
        return self._reduce(self._evaluate(guesses, truths, sample_weight, want_grad=False))

    def get_loss_per_example(self, guesses, truths, *, sample_weight=None):
        """Return the unnormalised loss of each example, shape ``(N,)``."""
        return self._evaluate(guesses, truths, sample_weight, want_grad=False).per_example

    # What subclasses implement ------------------------------------------

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        """Return ``(grad / divisor or None, per_example_losses)``."""
        raise NotImplementedError

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

    # Shared plumbing ----------------------------------------------------

    def _evaluate(self, guesses, truths, sample_weight, *, want_grad: bool) -> Evaluation:
        lengths = None
        if isinstance(guesses, Ragged):
            if not self.accepts_ragged:
                raise TypeError(f"Cannot calculate {self.name}: 'guesses' must not be a Ragged")
            lengths = guesses.lengths
            n = len(lengths)
            guesses = guesses.dataXd
        else:
            n = self.count_examples(guesses)
        divisor = n if (self.normalize and n > 0) else 1
        grad, per_example = self.compute(
            guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad
        )
        if lengths is not None and grad is not None:
            grad = Ragged(grad, lengths)
        return Evaluation(grad, per_example, divisor)

    def _reduce(self, result: Evaluation) -> float:
        per_example = result.per_example
        if per_example.size == 0:
            return 0.0
        return float(per_example.sum(dtype=numpy.float64)) / result.divisor

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


def as_compute_dtype(x):
    """Return ``x`` in the dtype the maths runs in (float16 becomes float32)."""
    if x.dtype.itemsize < 4:
        return x.astype("float32")
    return x


def restore_dtype(grad, like):
    """Cast a gradient computed in float32 back to float16 guesses' dtype."""
    if grad is not None and grad.dtype != like.dtype:
        return grad.astype(like.dtype)
    return grad
