"""Margin losses on raw scores: hinge, squared hinge, logistic and multi-class margin.

:class:`Hinge`, :class:`SquaredHinge` and :class:`LogisticLoss` are
elementwise, like :class:`~thinc_losses_plus.binary.BinaryCrossentropy`:
guesses ``(N,)`` or ``(N, C)`` of scores, truths of the same shape holding
labels, the loss of an example is the sum over the columns of its row and
``normalize`` divides by the number of rows N. :class:`MultiMargin` takes one
class index per row. Every gradient is the exact derivative with respect to
the scores (0 at the kink of a hinge, as PyTorch's ``relu``).
"""
import math
from typing import Any, List, Optional, Union

from thinc.backends import get_array_ops

from ._checks import call_error, check_choice, check_float, check_int
from ._core import LossCalculator
from ._inputs import as_compute_dtype, check_finite, float_array, prepare_sample_weight, restore_dtype
from ._binary_inputs import (
    ElementwiseCalculator,
    combine_weights,
    elementwise_inputs,
    finish,
    host_flags,
    sigmoid_from_parts,
    softplus_parts,
)
from .labels import ClassWeights, LabelScheme, check_class_weights, class_weight_list



def check_margin(name: str, margin: Any) -> float:
    return check_float(name, "margin", margin, low=0.0, high=math.inf, high_open=True)


def signed_labels(name: str, x, t, xp, *, label_format: str):
    """Check finite scores and labels; return the labels as signs -1/+1.

    ``label_format``: ``"signed"`` (-1/1), ``"binary"`` (0/1, mapped to
    -1/1) or ``"either"`` (whichever the batch uses; mixing -1 and 0 is refused).
    """
    if not x.size:
        return t
    is_one, is_neg, is_zero = t == 1, t == -1, t == 0
    if label_format == "signed":
        ok = is_one | is_neg
    elif label_format == "binary":
        ok = is_one | is_zero
    else:
        ok = is_one | is_neg | is_zero
    bad_x, bad_t, has_neg, has_zero = host_flags(
        xp, ~xp.isfinite(x.sum(dtype=xp.float64)), ~ok.all(), is_neg.any(), is_zero.any()
    )
    if bad_x:
        raise call_error(name, "guesses", "contains NaN or infinite values")
    if bad_t:
        if not bool(xp.isfinite(t).all()):
            raise call_error(name, "truths", "contains NaN or infinite values")
        value = float(t[~ok].reshape(-1)[0])
        expected = {"signed": "-1 or 1", "binary": "0 or 1", "either": "-1/1 or 0/1"}[label_format]
        raise call_error(name, "truths", f"must hold labels {expected}, got {value:g}")
    if label_format == "either" and has_neg and has_zero:
        raise call_error(name, "truths", "mixes -1 and 0 labels: use -1/1 or 0/1, not both")
    if label_format == "binary" or (label_format == "either" and has_zero):
        return 2.0 * t - 1.0
    return t


# Maths ---------------------------------------------------------------------


def hinge_loss(x, signs, *, margin: float, squared: bool, want_grad: bool = True):
    """Elementwise ``max(0, margin - y x)`` (squared: its square) and ``d/dx``.

    The derivative is ``-y`` where ``margin - y x > 0`` and 0 elsewhere
    (squared: ``-2 y max(0, margin - y x)``). Returns ``(grad or None, loss)``.
    """
    xp = get_array_ops(x).xp
    slack = xp.multiply(signs, x)
    xp.subtract(margin, slack, out=slack)
    active = xp.clip(slack, 0.0, math.inf)  # faster than maximum in numpy
    if squared:
        loss = active * active
        grad = xp.multiply(signs, active, out=slack) if want_grad else None
        grad_scale = -2.0
    else:
        loss = active
        grad = xp.multiply(signs, slack > 0, out=slack) if want_grad else None
        grad_scale = -1.0
    if grad is not None:
        grad *= grad_scale
    return grad, loss


def logistic_loss(x, signs, *, want_grad: bool = True):
    """Elementwise ``log(1 + exp(-y x))`` (stable softplus) and ``-y s(-y x)``."""
    xp = get_array_ops(x).xp
    z = xp.multiply(signs, x)
    xp.negative(z, out=z)
    loss, e = softplus_parts(z, xp)
    if not want_grad:
        return None, loss
    grad = sigmoid_from_parts(z, e, xp)
    grad *= signs
    xp.negative(grad, out=grad)
    return grad, loss


def multi_margin_loss(x, labels, *, p: int, margin: float, weight=None, want_grad: bool = True, scale: float = 1.0):
    """PyTorch's ``multi_margin_loss`` per row, and ``d/dx`` times ``scale``.

    Row loss: ``sum_{i != y} w_i max(0, margin - x_y + x_i)^p / C``, where
    ``weight`` (broadcast to ``(N, C)``) gives ``w``. The derivative with
    respect to ``x_i`` (``i != y``) is ``w_i p h_i^(p-1) [h_i > 0] / C`` and
    ``x_y`` gets minus their sum. Returns ``(grad or None, per-row losses)``.
    """
    xp = get_array_ops(x).xp
    n, c = x.shape
    c = max(c, 1)  # (0, 0) guesses: nothing to divide
    rows = xp.arange(n)
    slack = x + (margin - x[rows, labels])[:, None]
    slack[rows, labels] = 0.0  # the gold class has no term
    active = xp.clip(slack, 0.0, math.inf)  # faster than maximum in numpy
    terms = active * active if p == 2 else active  # p = 1: active is not needed again
    if weight is not None:
        terms *= weight
    per_example = terms.sum(axis=1) / c
    if not want_grad:
        return None, per_example
    grad = 2.0 * active if p == 2 else (slack > 0).astype(x.dtype)
    grad *= scale / c if weight is None else weight * (scale / c)
    grad[rows, labels] = -grad.sum(axis=1)
    return grad, per_example


# Calculators ---------------------------------------------------------------


class _Hinge(ElementwiseCalculator):
    squared = False

    def __init__(self, *, normalize: bool = True, margin: float = 1.0):
        super().__init__(normalize=normalize)
        self.margin = check_margin(self.name, margin)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        x, t, xp = elementwise_inputs(self.name, guesses, truths)
        signs = signed_labels(self.name, x, t, xp, label_format="either")
        weight = prepare_sample_weight(self.name, sample_weight, x.shape, xp, x.dtype)
        grad, loss = hinge_loss(x, signs, margin=self.margin, squared=self.squared, want_grad=want_grad)
        return finish(grad, loss, weight, divisor, guesses)


class Hinge(_Hinge):
    """Hinge loss on raw scores, for binary and multi-label outputs.

    Each entry contributes ``max(0, margin - y x)`` for the score ``x`` and
    label ``y`` in {-1, 1}; labels 0/1 are mapped to -1/1 (a batch may use
    either, not both). The loss of an example is the **sum over the columns
    of its row** (Keras' ``Hinge`` averages over the columns instead);
    ``normalize`` divides by the number of rows N.

    Shapes: guesses ``(N, C)`` or ``(N,)``; truths the same shape.

    Gradient: the exact derivative with respect to the scores, ``-y`` where
    the margin is violated, 0 elsewhere (0 at the kink).

    Args:
        normalize: divide the loss and the gradient by N.
        margin: ``>= 0`` (0 gives the perceptron criterion).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import Hinge
        >>> loss_calc = Hinge()
        >>> guesses = numpy.asarray([[0.3, -2.0]], dtype="f")
        >>> truths = numpy.asarray([[1, 0]], dtype="f")
        >>> grad, loss = loss_calc(guesses, truths)
        >>> round(loss, 4), grad.tolist()  # max(0, 1 - 0.3) + max(0, 1 - 2)
        (0.7, [[-1.0, 0.0]])

    Config::

        [loss]
        @losses = "Hinge.v1"
        margin = 1.0

    References:
        Keras ``Hinge``: https://keras.io/api/losses/hinge_losses/
    """

    name = "Hinge"


class SquaredHinge(_Hinge):
    """Squared hinge loss on raw scores, for binary and multi-label outputs.

    Each entry contributes ``max(0, margin - y x)^2`` for the score ``x`` and
    label ``y`` in {-1, 1}; labels 0/1 are mapped to -1/1 (a batch may use
    either, not both). The loss of an example is the **sum over the columns
    of its row** (Keras averages over the columns); ``normalize`` divides by N.

    Shapes: guesses ``(N, C)`` or ``(N,)``; truths the same shape.

    Gradient: the exact derivative with respect to the scores,
    ``-2 y max(0, margin - y x)``.

    Args:
        normalize: divide the loss and the gradient by N.
        margin: ``>= 0``.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import SquaredHinge
        >>> guesses = numpy.asarray([[0.5, 0.5]], dtype="f")
        >>> truths = numpy.asarray([[1, -1]], dtype="f")
        >>> grad, loss = SquaredHinge()(guesses, truths)
        >>> loss, grad.tolist()  # 0.5**2 + 1.5**2
        (2.5, [[-1.0, 3.0]])

    Config::

        [loss]
        @losses = "SquaredHinge.v1"
        margin = 1.0

    References:
        Keras ``SquaredHinge``: https://keras.io/api/losses/hinge_losses/
    """

    name = "SquaredHinge"
    squared = True


class LogisticLoss(ElementwiseCalculator):
    """Logistic loss on raw scores (MXNet Gluon's ``LogisticLoss``), registered as ``Logistic.v1``.

    Each entry contributes ``log(1 + exp(-y x))`` for the score ``x`` and
    label ``y`` in {-1, 1} (``label_format="signed"``) or ``2t - 1`` for
    ``t`` in {0, 1} (``"binary"``), computed stably. The loss of an example is
    the **sum over the columns of its row** (Gluon averages over them);
    ``normalize`` divides by N. With 0/1 labels it equals
    :class:`~thinc_losses_plus.BinaryCrossentropy` with ``from_logits=True``.

    Shapes: guesses ``(N, C)`` or ``(N,)``; truths the same shape.

    Gradient: the exact derivative with respect to the scores,
    ``-y sigmoid(-y x)`` (finite for any score).

    Args:
        normalize: divide the loss and the gradient by N.
        label_format: ``"signed"`` (labels -1/1) or ``"binary"`` (labels 0/1).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import LogisticLoss
        >>> guesses = numpy.asarray([[0.0, 2.0]], dtype="f")
        >>> truths = numpy.asarray([[1, -1]], dtype="f")
        >>> round(LogisticLoss().get_loss(guesses, truths), 4)  # log(2) + log(1 + e^2)
        2.8201

    Config::

        [loss]
        @losses = "Logistic.v1"
        label_format = "binary"

    References:
        MXNet Gluon ``LogisticLoss``:
        https://mxnet.apache.org/versions/1.9.1/api/python/docs/api/gluon/loss/index.html
    """

    name = "Logistic"

    def __init__(self, *, normalize: bool = True, label_format: str = "signed"):
        super().__init__(normalize=normalize)
        self.label_format = check_choice(self.name, "label_format", label_format, ("signed", "binary"))

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        x, t, xp = elementwise_inputs(self.name, guesses, truths)
        signs = signed_labels(self.name, x, t, xp, label_format=self.label_format)
        weight = prepare_sample_weight(self.name, sample_weight, x.shape, xp, x.dtype)
        grad, loss = logistic_loss(x, signs, want_grad=want_grad)
        return finish(grad, loss, weight, divisor, guesses)


class MultiMargin(LossCalculator):
    """Multi-class margin loss on raw scores (PyTorch ``MultiMarginLoss``).

    For scores ``x`` (one row per example) and the gold class ``y`` of the
    row, the loss of the example is
    ``sum_{i != y} w_y max(0, margin - x_y + x_i)^p / C``; ``normalize``
    divides by the number of rows N (PyTorch's ``"mean"``).

    Shapes: guesses ``(N, C)``; truths ``N`` class indices (int array or
    list of ints), or label strings with ``names``.

    Gradient: the exact derivative with respect to the scores (0 at the
    kink when ``p = 1``, as PyTorch).

    Args:
        normalize: divide the loss and the gradient by N.
        p: 1 or 2.
        margin: ``>= 0``.
        class_weights: ``w``, a list indexed by class, or a dict name ->
            weight when ``names`` are given (absent names weigh 1).
        names: column names, to accept string labels.
        missing_value: a label (int or str) whose rows are masked (loss
            and gradient 0; they still count in N). Without one, ``None``
            labels in a list are missing (as in Thinc's categorical losses).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import MultiMargin
        >>> guesses = numpy.asarray([[2.0, 1.5, -1.0]], dtype="f")
        >>> grad, loss = MultiMargin()(guesses, [0])
        >>> round(loss, 4)  # (max(0, 1 - 2 + 1.5) + max(0, 1 - 2 - 1)) / 3
        0.1667

    Config::

        [loss]
        @losses = "MultiMargin.v1"
        p = 1
        margin = 1.0

    References:
        PyTorch ``MultiMarginLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.MultiMarginLoss.html
        Weston & Watkins (1999), Support Vector Machines for Multi-Class Pattern Recognition.
    """

    name = "MultiMargin"

    def __init__(
        self,
        *,
        normalize: bool = True,
        p: int = 1,
        margin: float = 1.0,
        class_weights: ClassWeights = None,
        names: Optional[List[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
    ):
        super().__init__(normalize=normalize)
        self.p = check_choice(self.name, "p", check_int(self.name, "p", p), (1, 2))
        self.margin = check_margin(self.name, margin)
        self._labels = LabelScheme(self.name, names=names, missing_value=missing_value)
        self.names = self._labels.names
        self.missing_value = self._labels.missing_value
        self.class_weights = check_class_weights(self.name, class_weights, self.names)

    def count_examples(self, guesses) -> int:
        return int(float_array(self.name, "guesses", guesses, ndim=2).shape[0])

    def _class_weight_array(self, n_classes: int, xp, dtype):
        return xp.asarray(class_weight_list(self.name, self.class_weights, self.names, n_classes), dtype=dtype)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        float_array(self.name, "guesses", guesses, ndim=2)
        xp = get_array_ops(guesses).xp
        x = as_compute_dtype(guesses)
        n, c = x.shape
        self._labels.check_n_classes(c)
        labels = self._labels.to_indices(truths, n, c, xp)
        check_finite(self.name, "guesses", x)
        keep = None if labels.missing is None else (~labels.missing).astype(x.dtype)[:, None]
        gold_weight = None
        if self.class_weights is not None:
            gold_weight = self._class_weight_array(c, xp, x.dtype)[labels.indices][:, None]
        weight = combine_weights(keep, gold_weight, prepare_sample_weight(self.name, sample_weight, x.shape, xp, x.dtype))
        grad, per_example = multi_margin_loss(
            x, labels.indices, p=self.p, margin=self.margin, weight=weight, want_grad=want_grad, scale=1.0 / divisor
        )
        return restore_dtype(grad, guesses), per_example
