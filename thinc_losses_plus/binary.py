"""Binary and multi-label losses (sigmoid family): cross-entropy and focal loss.

Guesses are ``(N,)`` or ``(N, C)`` arrays, one independent binary decision per
entry: probabilities (the output of Thinc's ``Sigmoid`` or ``Logistic``
layers) or, with ``from_logits=True``, the scores before the sigmoid. Truths
have the guesses' shape and hold targets in ``[0, 1]`` (soft targets allowed).

The loss of an *example* is the sum of its row's elementwise terms; with
``normalize`` the loss and the gradient are divided by the number of rows N.
The classes here hold settings and validate inputs; the maths lives in
:mod:`thinc_losses_plus.functional.sigmoid`. The margin-based losses (hinge,
logistic, multi-class margin) live in :mod:`thinc_losses_plus.margin`.
"""
import math
from numbers import Real
from typing import Any, List, Optional, Union

import numpy

from ._checks import call_error, check_bool, check_float, setting_error
from ._core import LossCalculator
from ._inputs import (
    Checks,
    ElementwiseRows,
    array_module,
    check_loss_overflow,
    elementwise_inputs,
    elementwise_weights,
    finite_problem,
    is_array,
    restore_dtype,
)
from .functional.blocks import OnePassElements, blocked_elementwise
from .functional.sigmoid import (
    PROB_EPS,
    binary_cross_entropy,
    binary_focal_loss,
    focal_alpha_weights,
    sigmoid_cross_entropy_with_logits,
    sigmoid_focal_loss_with_logits,
)
from .labels import ClassWeights, LabelScheme, NamedColumns, check_missing_target

__all__ = ["BinaryCrossentropy", "BinaryFocalCrossentropy", "PROB_EPS"]

Weights = Optional[Union[float, List[float]]]


# Settings and inputs ---------------------------------------------------------


def check_weights(name: str, arg: str, value: Any, *, allow_scalar: bool) -> Weights:
    """Validate a non-negative weight, or a non-empty list (or 1-d array) of them, one per column."""
    if value is None:
        return None
    if allow_scalar and isinstance(value, Real) and not isinstance(value, bool):
        return check_float(name, arg, value, low=0.0, high=math.inf, high_open=True)
    if is_array(value) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (list, tuple)) and value:
        return [check_float(name, arg, v, low=0.0, high=math.inf, high_open=True) for v in value]
    kind = "a number or a non-empty list of numbers" if allow_scalar else "a non-empty list of numbers"
    raise setting_error(name, arg, f"must be {kind} (one per column), got {value!r}", TypeError)


def column_array(name: str, arg: str, values: Weights, n_columns: int, xp, dtype):
    """A per-column setting as a C-contiguous ``(1, C)`` array (a number stays a float)."""
    if values is None or isinstance(values, float):
        return values
    if len(values) != n_columns:
        raise call_error(name, arg, f"has {len(values)} entries but the guesses have {n_columns} columns")
    return xp.asarray(values, dtype=dtype).reshape(1, n_columns)


def finite_guesses(checks: Checks, x, arg: str = "guesses") -> None:
    """Register the check that ``x`` holds no NaN or infinity: the dot product of ``x`` with
    itself (a NaN or an infinity makes it NaN or inf), one BLAS pass without a buffer (a
    float64 sum casts through one of up to 64 KiB, 8% of the gradient at 4096x50, and takes
    5x as long; a min and a max take two passes). A product that overflows from finite
    values (``|x|`` near 1e19 in float32) is no error: :func:`finite_problem` says so."""
    if x.size:
        flat = x.reshape(-1)
        with numpy.errstate(over="ignore", invalid="ignore"):
            square = checks.xp.dot(flat, flat)
        checks.fail_if(~checks.xp.isfinite(square), arg, lambda: finite_problem(x))


def sigmoid_targets(checks: Checks, x, t, *, from_logits: bool, missing_value: Optional[float]):
    """Mask missing targets and register the checks of guesses and targets.

    Returns ``(t, keep)``: ``t`` with missing entries set to 0, and ``keep``
    (1 where the target counts, 0 where it is missing), or None without a
    ``missing_value``.
    """
    keep = None
    if missing_value is not None:
        keep = (t != missing_value).astype(t.dtype)
        t = t * keep
    if from_logits:
        finite_guesses(checks, x)
    else:
        checks.within("guesses", x, 0.0, 1.0, " (probabilities; pass from_logits=True for logits)")
    checks.within("truths", t, 0.0, 1.0, "" if missing_value is None else f" or equal missing_value={missing_value:g}")
    return t, keep


def saturated_grad(grad, guesses):
    """:func:`~thinc_losses_plus._inputs.elementwise_grad` (the same bits), clipping in place:
    for float16 guesses the float32 gradient saturates at float16's largest value without a
    float32 copy (probabilities of exactly 0 or 1 give gradients up to ``1 / PROB_EPS``)."""
    if grad is None:
        return None
    if guesses.dtype.itemsize < 4:
        big = float(numpy.finfo(guesses.dtype).max)
        array_module(grad).clip(grad, -big, big, out=grad)
    return restore_dtype(grad.reshape(guesses.shape), guesses)


def smoothed_targets(xp, t, e: float):
    """Keras' smoothed targets ``t (1 - e) + 0.5 e``, made block by block into a scratch
    array (:func:`~thinc_losses_plus.functional.blocks.blocked_elementwise`)."""

    def block(rows, buf):
        smoothed = xp.multiply(t[rows], 1.0 - e, out=buf)
        smoothed += 0.5 * e
        return smoothed

    return block


# Calculators ---------------------------------------------------------------


class BinaryCrossentropy(OnePassElements, NamedColumns, ElementwiseRows, LossCalculator):
    """Binary cross-entropy of independent sigmoid outputs (binary and multi-label).

    For guesses ``p`` (probabilities) and targets ``t`` in ``[0, 1]``, each entry
    contributes ``-w_c [pw_c t log p + (1 - t) log(1 - p)]``; the loss of an
    example is the **sum over the columns of its row** and ``normalize``
    divides by the number of rows N (PyTorch's ``"mean"`` averages over all
    N*C entries instead, a factor C apart).

    Shapes: guesses ``(N, C)`` or ``(N,)``; truths the same shape, floats, ints
    or bools (soft targets allowed).

    Gradient: given probabilities (the default), the exact ``dL/dp``; Thinc's
    ``Sigmoid`` and ``Logistic`` layers apply the sigmoid derivative
    themselves. ``p`` is clipped to ``[1e-7, 1 - 1e-7]`` (``PROB_EPS``) and the
    loss and gradient are evaluated at the clipped value, so ``p`` of exactly
    0 or 1 gives a finite loss and gradient. With ``from_logits=True`` guesses
    are logits ``x``, the loss is computed with a stable log-sigmoid and the
    gradient is with respect to ``x`` (``s(x) - t`` when unweighted).

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        from_logits: guesses are logits instead of probabilities.
        pos_weight: weight of the positive term, a number or one per column
            (PyTorch ``BCEWithLogitsLoss(pos_weight=...)`` semantics).
        label_smoothing: ``e`` in ``[0, 1)``; targets become
            ``t (1 - e) + 0.5 e`` (Keras semantics).
        missing_value: truth entries equal to it are masked: their term and
            gradient are 0 (rows still count in N). Must lie outside [0, 1].
        class_weights: one weight per column, ``w_c`` above (PyTorch's
            ``weight`` broadcast over the rows): a list, or a dict label ->
            weight when ``names`` are known (absent labels weigh 1.0).
        names: optional column names, for dict ``class_weights``; a spaCy
            component (``textcat_multilabel_with_loss``) supplies its labels.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import BinaryCrossentropy
        >>> loss_calc = BinaryCrossentropy()
        >>> guesses = numpy.asarray([[0.9, 0.2]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0]], dtype="f")
        >>> grad, loss = loss_calc(guesses, truths)
        >>> round(loss, 4)  # -log(0.9) - log(0.8)
        0.3285
        >>> [round(float(g), 4) for g in grad[0]]  # -1/0.9, 1/0.8
        [-1.1111, 1.25]

    Config::

        [loss]
        @losses = "BinaryCrossentropy.v1"
        from_logits = false
        pos_weight = 2.0
        missing_value = -1

    References:
        PyTorch ``BCELoss`` / ``BCEWithLogitsLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.BCEWithLogitsLoss.html
        Keras ``BinaryCrossentropy`` (label smoothing):
        https://keras.io/api/losses/probabilistic_losses/#binarycrossentropy-class
    """

    elementwise = True  # one term per element: "elements" divides by N x C

    name = "BinaryCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        from_logits: bool = False,
        pos_weight: Weights = None,
        label_smoothing: float = 0.0,
        missing_value: Optional[float] = None,
        class_weights: ClassWeights = None,
        names: Optional[List[str]] = None,
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.pos_weight = check_weights(self.name, "pos_weight", pos_weight, allow_scalar=True)
        self.label_smoothing = check_float(self.name, "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)
        self.missing_value = check_missing_target(self.name, missing_value)
        self.labels = LabelScheme(self.name, names=names, class_weights=class_weights)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        return self.elementwise_pass(guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad)

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool, want_terms: bool = False):
        """:meth:`compute`; with ``want_terms``, ``(terms, per_example)`` (:class:`OnePassElements`)."""
        x, t = elementwise_inputs(self.name, guesses, truths)
        xp = array_module(x)
        n_columns = x.shape[1]
        self.labels.check_n_classes(n_columns)
        pos_weight = column_array(self.name, "pos_weight", self.pos_weight, n_columns, xp, x.dtype)
        class_weights = self.labels.class_weight_array(n_columns, xp, x.dtype)
        checks = Checks(self.name, xp)
        t, keep = sigmoid_targets(checks, x, t, from_logits=self.from_logits, missing_value=self.missing_value)
        weights = elementwise_weights(self.name, sample_weight, guesses, x, checks, keep, class_weights)
        targets = smoothed_targets(xp, t, self.label_smoothing) if self.label_smoothing else t
        if self.from_logits:
            maths, n_slots = sigmoid_cross_entropy_with_logits, 3
        else:
            maths, n_slots = binary_cross_entropy, 3 if pos_weight is None else 4
        with numpy.errstate(all="ignore"):  # bad inputs and overflows are reported by the checks below
            grad, per_example = blocked_elementwise(
                xp, maths, x, targets, weights=weights, divisor=divisor, want_grad=want_grad,
                n_slots=n_slots, pos_weight=pos_weight, terms=xp.empty_like(x) if want_terms else None,
            )
        check_loss_overflow(checks, per_example)
        checks.run()
        return (grad if want_terms else saturated_grad(grad, guesses)), per_example


class BinaryFocalCrossentropy(OnePassElements, ElementwiseRows, LossCalculator):
    """Focal loss of independent sigmoid outputs (Lin et al., RetinaNet).

    Each entry contributes ``a_t (1 - p_t)^gamma ce``, where ``ce`` is the
    binary cross-entropy of the entry, ``p_t = p t + (1 - p)(1 - t)`` and
    ``a_t = alpha t + (1 - alpha)(1 - t)`` (``a_t = 1`` when ``alpha`` is None):
    torchvision's ``sigmoid_focal_loss``. The loss of an example is the **sum
    over the columns of its row**; ``normalize`` divides by the number of rows N.
    ``gamma = 0`` and ``alpha = None`` give :class:`BinaryCrossentropy`.

    Shapes: guesses ``(N, C)`` or ``(N,)``; truths the same shape, targets in
    ``[0, 1]`` (soft targets follow the same formula).

    Gradient: given probabilities (the default), the exact ``dL/dp``, with
    ``p`` clipped to ``[1e-7, 1 - 1e-7]`` as in :class:`BinaryCrossentropy`.
    With ``from_logits=True``, the gradient with respect to the logits,
    computed stably (finite for ``|x| = 1e4``).

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        gamma: focusing parameter, ``>= 0``.
        alpha: None (no balancing), or a weight in ``[0, 1]`` for positives
            (negatives get ``1 - alpha``); RetinaNet uses 0.25.
        from_logits: guesses are logits instead of probabilities.
        missing_value: truth entries equal to it are masked (term and
            gradient 0). Must lie outside [0, 1].

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import BinaryFocalCrossentropy
        >>> loss_calc = BinaryFocalCrossentropy(gamma=2.0)
        >>> guesses = numpy.asarray([[0.9, 0.2]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, truths), 5)  # 0.1**2 * -log(0.9) + 0.2**2 * -log(0.8)
        0.00998

    Config::

        [loss]
        @losses = "BinaryFocalCrossentropy.v1"
        gamma = 2.0
        alpha = 0.25
        from_logits = true

    References:
        Lin et al. (2017), Focal Loss for Dense Object Detection,
        https://arxiv.org/abs/1708.02002
        torchvision ``sigmoid_focal_loss``:
        https://pytorch.org/vision/stable/generated/torchvision.ops.sigmoid_focal_loss.html
    """

    elementwise = True  # one term per element: "elements" divides by N x C

    name = "BinaryFocalCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        gamma: float = 2.0,
        alpha: Optional[float] = None,
        from_logits: bool = False,
        missing_value: Optional[float] = None,
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.gamma = check_float(self.name, "gamma", gamma, low=0.0, high=math.inf, high_open=True)
        self.alpha = None if alpha is None else check_float(self.name, "alpha", alpha, low=0.0, high=1.0)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.missing_value = check_missing_target(self.name, missing_value)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        return self.elementwise_pass(guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad)

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool, want_terms: bool = False):
        """:meth:`compute`; with ``want_terms``, ``(terms, per_example)`` (:class:`OnePassElements`)."""
        x, t = elementwise_inputs(self.name, guesses, truths)
        xp = array_module(x)
        checks = Checks(self.name, xp)
        t, keep = sigmoid_targets(checks, x, t, from_logits=self.from_logits, missing_value=self.missing_value)
        weights = elementwise_weights(self.name, sample_weight, guesses, x, checks, keep)
        if self.alpha is not None:
            # RetinaNet's balance, block by block: keep * a_t * sample_weight has the bits of
            # a_t * (keep * sample_weight) (keep is 0 or 1, the weights finite).
            alpha, others = self.alpha, weights

            def weights(rows, buf):
                balance = focal_alpha_weights(xp, t[rows], alpha, out=buf)
                if others is not None:
                    balance *= others[rows]
                return balance

        if self.from_logits:
            maths, n_slots = sigmoid_focal_loss_with_logits, 5
        else:
            maths, n_slots = binary_focal_loss, 7
        with numpy.errstate(all="ignore"):  # bad inputs and overflows are reported by the checks below
            grad, per_example = blocked_elementwise(
                xp, maths, x, t, weights=weights, divisor=divisor, want_grad=want_grad, n_slots=n_slots,
                gamma=self.gamma, terms=xp.empty_like(x) if want_terms else None,
            )
        check_loss_overflow(checks, per_example)
        checks.run()
        return (grad if want_terms else saturated_grad(grad, guesses)), per_example
