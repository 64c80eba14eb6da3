"""Margin losses on raw scores: hinge, squared hinge, logistic and multi-class margin.

:class:`Hinge`, :class:`SquaredHinge` and :class:`LogisticLoss` are
elementwise, like :class:`~thinc_losses_plus.binary.BinaryCrossentropy`:
guesses ``(N,)`` or ``(N, C)`` of scores, truths of the same shape holding
labels, the loss of an example is the sum over the columns of its row and
``normalize`` divides by the number of rows N. :class:`MultiMargin` takes one
class index per row. Every gradient is the exact derivative with respect to
the scores (0 at the kink of a hinge, as PyTorch's ``relu``). The classes
here hold settings and validate inputs; the maths lives in
:mod:`thinc_losses_plus.functional.sigmoid`.
"""
import math
from typing import Any, List, Optional, Union

import numpy

from ._checks import call_error, check_choice, check_float, check_int
from ._core import LossCalculator
from ._inputs import (
    Checks,
    ElementwiseRows,
    array_module,
    check_loss_overflow,
    elementwise_grad,
    elementwise_inputs,
    elementwise_weights,
    float_array,
    float_guesses,
    restore_dtype,
)
from .binary import finite_guesses
from .functional.blocks import OnePassElements, blocked_elementwise
from .functional.sigmoid import hinge_loss, logistic_loss, logistic_slots, multi_margin_loss
from .labels import ClassWeights, LabelledColumns, LabelScheme

__all__ = ["Hinge", "SquaredHinge", "LogisticLoss", "MultiMargin"]

LABELS_EXPECTED = {"signed": "-1 or 1", "binary": "0 or 1", "either": "-1/1 or 0/1"}


def check_margin(name: str, margin: Any) -> float:
    return check_float(name, "margin", margin, low=0.0, high=math.inf, high_open=True)


def label_ok(t, label_format: str):
    """Bool array: the entries of ``t`` that are labels of ``label_format``."""
    ok = t == 1  # or-ed in place: two bool arrays at most, not four
    if label_format != "binary":
        ok |= t == -1
    if label_format != "signed":
        ok |= t == 0
    return ok


def label_problem(xp, t, label_format: str) -> str:
    """The message for labels that are not all of ``label_format`` (slow path, after a failure)."""
    if not bool(xp.isfinite(t).all()):
        return "contains NaN or infinite values"
    value = float(t[~label_ok(t, label_format)].reshape(-1)[0])
    return f"must hold labels {LABELS_EXPECTED[label_format]}, got {value:g}"


def signed_labels(checks: Checks, x, t, *, label_format: str):
    """Register the checks of scores and labels; return the labels as signs -1/+1.

    ``label_format``: ``"signed"`` (-1/1), ``"binary"`` (0/1, mapped to
    -1/1) or ``"either"`` (whichever the batch uses; mixing -1 and 0 is
    refused). Which one an ``"either"`` batch uses is decided on the device,
    so that the checks still take one transfer.

    The signs are ``t`` itself for -1/1 labels, else a function ``signs(rows,
    buf)`` writing the signs of the block ``rows`` into the scratch array
    ``buf`` (:func:`~thinc_losses_plus.functional.blocks.blocked_elementwise`):
    no array of the labels' size is made.
    """
    finite_guesses(checks, x)
    if not t.size:
        return t
    xp = checks.xp

    checks.fail_if(~label_ok(t, label_format).all(), "truths", lambda: label_problem(xp, t, label_format))
    if label_format == "signed":
        return t
    if label_format == "binary":

        def binary_signs(rows, buf):  # 2t - 1
            signs = xp.multiply(t[rows], 2.0, out=buf)
            signs -= 1.0
            return signs

        return binary_signs
    has_zero = (t == 0).any()
    checks.fail_if((t == -1).any() & has_zero, "truths", lambda: "mixes -1 and 0 labels: use -1/1 or 0/1, not both")
    shift = has_zero.astype(t.dtype)  # 1 for 0/1 labels: signs 2t - 1; 0 for -1/1 labels: t
    scale = shift + 1.0

    def either_signs(rows, buf):
        signs = xp.multiply(t[rows], scale, out=buf)
        signs -= shift
        return signs

    return either_signs


# Calculators ---------------------------------------------------------------


class _Hinge(OnePassElements, ElementwiseRows, LossCalculator):
    squared = False

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", margin: float = 1.0):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.margin = check_margin(self.name, margin)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        return self.elementwise_pass(guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad)

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool, want_terms: bool = False):
        """:meth:`compute`; with ``want_terms``, ``(terms, per_example)`` (:class:`OnePassElements`)."""
        x, t = elementwise_inputs(self.name, guesses, truths)
        checks = Checks(self.name, array_module(x))
        signs = signed_labels(checks, x, t, label_format="either")
        weights = elementwise_weights(self.name, sample_weight, guesses, x, checks)
        xp = checks.xp
        with numpy.errstate(all="ignore"):  # bad inputs and overflows are reported by the checks below
            grad, per_example = blocked_elementwise(
                xp, hinge_loss, x, signs, weights=weights, divisor=divisor, want_grad=want_grad, n_slots=1,
                margin=self.margin, squared=self.squared, terms=xp.empty_like(x) if want_terms else None,
            )
        check_loss_overflow(checks, per_example)  # the squared hinge of scores near 1e20 overflows float32
        checks.run()
        return (grad if want_terms else elementwise_grad(grad, guesses)), per_example


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
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
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

    elementwise = True  # one term per element: "elements" divides by N x C

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
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
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

    elementwise = True  # one term per element: "elements" divides by N x C

    name = "SquaredHinge"
    squared = True


class LogisticLoss(OnePassElements, ElementwiseRows, LossCalculator):
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
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
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

    elementwise = True  # one term per element: "elements" divides by N x C

    name = "Logistic"

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", label_format: str = "signed"):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.label_format = check_choice(self.name, "label_format", label_format, ("signed", "binary"))

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        return self.elementwise_pass(guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad)

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool, want_terms: bool = False):
        """:meth:`compute`; with ``want_terms``, ``(terms, per_example)`` (:class:`OnePassElements`)."""
        x, t = elementwise_inputs(self.name, guesses, truths)
        checks = Checks(self.name, array_module(x))
        xp = checks.xp
        signs = signed_labels(checks, x, t, label_format=self.label_format)
        # 0/1 labels: -y = 1 - 2t is applied on the sign bits, made from t in the maths itself
        # (logistic_loss's binary_labels): no array of signs, one scratch slot fewer per block.
        binary = self.label_format == "binary" and bool(t.size)
        if binary:
            signs = t
        weights = elementwise_weights(self.name, sample_weight, guesses, x, checks)
        with numpy.errstate(all="ignore"):  # bad inputs and overflows are reported by the checks below
            grad, per_example = blocked_elementwise(
                xp, logistic_loss, x, signs, weights=weights, divisor=divisor, want_grad=want_grad,
                n_slots=logistic_slots(xp), binary_labels=binary, terms=xp.empty_like(x) if want_terms else None,
            )
        check_loss_overflow(checks, per_example)
        checks.run()
        return (grad if want_terms else elementwise_grad(grad, guesses)), per_example


class MultiMargin(LabelledColumns, LossCalculator):
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
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
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
    takes_labels = True

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        p: int = 1,
        margin: float = 1.0,
        class_weights: ClassWeights = None,
        names: Optional[List[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.p = check_choice(self.name, "p", check_int(self.name, "p", p), (1, 2))
        self.margin = check_margin(self.name, margin)
        self.labels = LabelScheme(self.name, names=names, missing_value=missing_value, class_weights=class_weights)

    def count_examples(self, guesses) -> int:
        return int(float_array(self.name, "guesses", guesses, ndim=2).shape[0])

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        x = float_guesses(self.name, "guesses", guesses, ndims=(2,))
        xp = array_module(x)
        n, c = x.shape
        if n and not c:
            raise call_error(self.name, "guesses", f"must have at least one column (one per class), got shape {(n, c)}")
        self.labels.check_n_classes(c)
        gold_weights = self.labels.class_weight_array(c, xp, x.dtype)
        checks = Checks(self.name, xp)
        labels = self.labels.to_indices(truths, n, c, xp, checks)
        checks.finite("guesses", x)
        # Out-of-range labels fail the checks, which run after the maths (one
        # transfer in all): until then, index with labels clipped into range.
        # The smallest int type that holds every class (2% of the gradient's bytes at 4096x50, not 4%).
        indices = xp.clip(labels.indices, 0, max(c - 1, 0)).astype(numpy.min_scalar_type(-max(c, 1)))
        keep = None if labels.missing is None else (~labels.missing).astype(x.dtype)[:, None]
        if gold_weights is not None:
            gold_weights = gold_weights[0][indices][:, None]
        weights = elementwise_weights(self.name, sample_weight, guesses, x, checks, keep, gold_weights)
        with numpy.errstate(all="ignore"):  # bad inputs and overflows are reported by the checks below
            grad, per_example = multi_margin_loss(
                xp, x, indices, p=self.p, margin=self.margin, weights=weights, divisor=divisor, want_grad=want_grad
            )
        check_loss_overflow(checks, per_example)  # p = 2 squares score differences: 1e20 overflows float32
        checks.run()
        return restore_dtype(grad, guesses), per_example
