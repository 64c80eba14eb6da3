"""The categorical (softmax) family: Thinc's cross-entropy, done right, at v4.

Thinc's released ``CategoricalCrossentropy.v1-v3`` return ``sum(grad**2)`` as
their "loss". The v4 design its maintainers drafted (and reverted before
release) reports the true cross-entropy with the same gradient; this module
ships it, split into a dense and a sparse calculator, and adds
``from_logits`` and ``class_weights``. The focal loss (``focal.py``), KL
divergence (``divergence.py``) and sequence loss (``sequence.py``) build on
the classes here.

Gradient convention of the whole family: with respect to the **logits**.
Given probabilities (``from_logits=False``) the guesses are taken to be
``softmax(logits)`` and the gradient is ``p - target`` (scaled, weighted,
masked), which is what Thinc's ``Softmax`` layer expects: its backward pass
skips the softmax Jacobian. With ``from_logits=True`` the guesses are the
logits and the softmax is computed stably inside.
"""
from typing import Optional, Sequence, Union

from thinc.backends import get_array_ops

from ._base import LossCalculator, as_compute_dtype, restore_dtype
from ._checks import (
    call_error,
    check_bool,
    check_finite,
    check_float,
    float_array,
    is_array,
    prepare_sample_weight,
)
from .labels import (
    ClassWeights,
    LabelScheme,
    NamedColumns,
    check_class_weights,
    check_missing_value,
    check_names,
    class_weight_list,
)
from .softmax import (
    distribution_problem,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)

class _Categorical(NamedColumns, LossCalculator):
    """Settings and conversions shared by the softmax-family calculators."""

    accepts_ragged = True
    softmax_family = True

    def _init_common(self, *, normalize, from_logits, class_weights, names=None):
        LossCalculator.__init__(self, normalize=normalize)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.class_weights = check_class_weights(self.name, class_weights, names)

    # Call-time helpers ------------------------------------------------------

    def _guesses(self, guesses):
        """Validate the guesses; return them in the compute dtype and their xp."""
        float_array(self.name, "guesses", guesses, ndim=2)
        xp = get_array_ops(guesses).xp
        if self.from_logits:
            check_finite(self.name, "guesses", guesses)
        else:
            problem = distribution_problem(xp, guesses)
            if problem:
                raise call_error(self.name, "guesses", f"{problem} (they must be probabilities; use from_logits=True for logits)")
        self._check_columns(guesses.shape[1])
        return as_compute_dtype(guesses), xp

    def _weights(self, xp, guesses, sample_weight, scale: float = 1.0):
        """Class weights times sample weights, broadcastable to the guesses (or None)."""
        n, c = guesses.shape
        weights = prepare_sample_weight(self.name, sample_weight, (n, c), xp, guesses.dtype)
        if self.class_weights is not None:
            per_class = class_weight_list(self.name, self.class_weights, self.names, c)
            class_w = xp.asarray(per_class, dtype=guesses.dtype).reshape(1, c)
            weights = class_w if weights is None else weights * class_w
        if scale != 1.0:
            weights = xp.full((1, c), scale, dtype=guesses.dtype) if weights is None else weights * scale
        return weights


def check_label_smoothing(name: str, value) -> float:
    """0 <= e; the upper bound (C-1)/C depends on C and is checked at call time."""
    return check_float(name, "label_smoothing", value, low=0.0, high=1.0, high_open=True)


def check_smoothing_for(name: str, label_smoothing: float, n_classes: int) -> None:
    if label_smoothing and label_smoothing >= (n_classes - 1) / n_classes:
        raise call_error(
            name,
            "label_smoothing",
            f"must be < (C-1)/C = {(n_classes - 1) / n_classes:g} for C = {n_classes} classes, got {label_smoothing:g}",
        )


class SparseCategoricalCrossentropy(_Categorical):
    """Cross-entropy of softmax outputs against class labels (ints or names).

    For each row ``i`` with label ``y`` and target ``t`` (``1 - e`` on ``y``,
    ``e / (C - 1)`` elsewhere; ``e = label_smoothing``)::

        loss = -sum_i sum_c w_c * t_ic * log(p_ic + 1e-9) / n
        grad =  (p_i - t_i) / n                       (w = 1)
        grad =  (p_i * sum_c w_c t_ic - w * t_i) / n  (class/sample weights)

    ``n`` is the number of rows (of sequences for ``Ragged`` guesses) when
    ``normalize``, else 1; rows with a missing label count in ``n``. The
    gradient is with respect to the logits (see the module docstring);
    with ``from_logits=True`` ``log p`` is the exact log-softmax of the guesses.

    Truths: an int array, a list of ints, or a list of strings mapped through
    ``names``. A label equal to ``missing_value`` (or ``None`` when
    ``missing_value`` is None) masks its row. With ``neg_prefix="!"`` the label
    ``"!NOUN"`` means "not NOUN": its row is masked except the NOUN column,
    whose target is 0 (gradient ``p_NOUN``; the row adds 0 to the loss).
    ``class_weights`` (a list indexed by class, or a dict name -> weight with
    1.0 for absent names) give PyTorch's weighted cross-entropy.

    Shapes: guesses ``(N, C)`` probabilities (logits with ``from_logits``)
    or a ``Ragged`` of them; truths ``N`` labels (int array, list of ints or
    of strings).

    Args:
        normalize: divide the loss and the gradient by N.
        names: column names; string labels are mapped through them.
        missing_value: a label (int or str) whose rows are masked; None
            masks ``None`` labels.
        neg_prefix: prefix of negative labels ("not X"), e.g. "!".
        label_smoothing: ``e`` in [0, (C-1)/C): ``1 - e`` on the label,
            ``e / (C - 1)`` on every other class.
        from_logits: the guesses are logits (softmax computed inside).
        class_weights: a list indexed by class, or a dict name -> weight
            (absent names weigh 1.0).

    Example:
        >>> import numpy
        >>> loss_calc = SparseCategoricalCrossentropy(names=["NOUN", "VERB"])
        >>> guesses = numpy.asarray([[0.9, 0.1], [0.2, 0.8]], dtype="f")
        >>> grad, loss = loss_calc(guesses, ["NOUN", "VERB"])
        >>> round(loss, 4)  # -(log 0.9 + log 0.8) / 2
        0.1643
        >>> grad.astype("float64").round(4).tolist()  # (p - onehot) / 2
        [[-0.05, 0.05], [0.1, -0.1]]

    Config::

        [loss]
        @losses = "SparseCategoricalCrossentropy.v4"
        names = ["NOUN", "VERB"]
        label_smoothing = 0.1
    """

    name = "SparseCategoricalCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
    ):
        self._labels = LabelScheme(self.name, names=names, missing_value=missing_value, neg_prefix=neg_prefix)
        self.names = self._labels.names
        self.missing_value = missing_value
        self.neg_prefix = neg_prefix
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing)
        self._init_common(normalize=normalize, from_logits=from_logits, class_weights=class_weights, names=self.names)

    def _set_names(self, names):
        self._labels = LabelScheme(self.name, names=names, missing_value=self.missing_value, neg_prefix=self.neg_prefix)
        self.names = self._labels.names

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        work, xp = self._guesses(guesses)
        n, c = work.shape
        check_smoothing_for(self.name, self.label_smoothing, c)
        labels = self._labels.to_indices(truths, n, c, xp)
        grad, losses = softmax_cross_entropy_with_integer_labels(
            xp,
            work,
            labels.indices,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
            weights=self._weights(xp, work, sample_weight),
            missing=labels.missing,
            negative=labels.negative,
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses


class CategoricalCrossentropy(_Categorical):
    """Cross-entropy of softmax outputs against dense target distributions.

    Each row of the truths is a distribution over the C classes (one-hot or
    soft). With ``t`` the (smoothed) target row and ``w`` the weights::

        loss = -sum_i sum_c w_c * t_ic * log(p_ic + 1e-9) / n
        grad =  (p_i - t_i) / n                       (w = 1)
        grad =  (p_i * sum_c w_c t_ic - w * t_i) / n  (class/sample weights)

    The gradient is with respect to the logits (see the module docstring).
    ``missing_value`` (an int) masks the rows whose argmax equals it.
    ``label_smoothing`` ``e`` applies to one-hot rows only: ``1 - e`` on the
    hot column, ``e / (C - 1)`` elsewhere. ``names`` are optional: they let
    ``class_weights`` be a dict and check the number of columns.

    Shapes: guesses ``(N, C)`` probabilities (logits with ``from_logits``)
    or a ``Ragged`` of them; truths ``(N, C)`` target distributions.

    Args:
        normalize: divide the loss and the gradient by N.
        names: optional column names (for dict ``class_weights``).
        missing_value: an int; rows whose truth argmax equals it are masked.
        label_smoothing: ``e`` for one-hot rows: ``1 - e`` on the hot
            column, ``e / (C - 1)`` elsewhere.
        from_logits: the guesses are logits (softmax computed inside).
        class_weights: a list indexed by class, or a dict name -> weight.

    Example:
        >>> import numpy
        >>> loss_calc = CategoricalCrossentropy()
        >>> guesses = numpy.asarray([[0.5, 0.5], [0.25, 0.75]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0], [0.0, 1.0]], dtype="f")
        >>> grad, loss = loss_calc(guesses, truths)
        >>> round(loss, 4)  # -(log 0.5 + log 0.75) / 2
        0.4904
        >>> grad.tolist()
        [[-0.25, 0.25], [0.125, -0.125]]

    Config::

        [loss]
        @losses = "CategoricalCrossentropy.v4"
        missing_value = -1
        from_logits = false
    """

    name = "CategoricalCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[int] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
    ):
        self.names = check_names(self.name, names)
        self.missing_value = check_missing_value(self.name, missing_value, allow_str=False)
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing)
        self._init_common(normalize=normalize, from_logits=from_logits, class_weights=class_weights, names=self.names)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        work, xp = self._guesses(guesses)
        target, missing = dense_target(self.name, xp, truths, work, self.missing_value, self.label_smoothing)
        grad, losses = softmax_cross_entropy(
            xp,
            work,
            target,
            from_logits=self.from_logits,
            weights=self._weights(xp, work, sample_weight),
            missing=missing,
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses


def dense_target(name: str, xp, truths, guesses, missing_value, label_smoothing):
    """Validate dense truths; return the (smoothed) target and the missing rows."""
    if not is_array(truths) or truths.dtype.kind != "f":
        kind = truths.dtype if is_array(truths) else type(truths).__name__
        raise call_error(
            name, "truths", f"must be a float array of target distributions, got {kind} "
            "(for class labels use SparseCategoricalCrossentropy)", TypeError
        )
    if tuple(truths.shape) != tuple(guesses.shape):
        raise call_error(name, "truths", f"must have the guesses' shape {tuple(guesses.shape)}, got {tuple(truths.shape)}")
    truths = xp.asarray(truths)
    missing = None
    checked = truths
    if missing_value is not None and truths.size:
        missing = xp.argmax(truths, axis=1) == missing_value
        if bool(missing.any()):
            checked = truths[~missing]
        else:
            missing = None
    problem = distribution_problem(xp, checked)
    if problem:
        raise call_error(name, "truths", problem)
    target = truths.astype(guesses.dtype, copy=False)
    if label_smoothing:
        n_classes = guesses.shape[1]
        check_smoothing_for(name, label_smoothing, n_classes)
        if checked.size and not bool(((checked == 0) | (checked == 1)).all()):
            raise call_error(name, "label_smoothing", "applies to one-hot truth rows only; some rows are soft")
        off = label_smoothing / (n_classes - 1)
        target = target * (1.0 - label_smoothing - off) + off
    return target, missing
