"""The categorical (softmax) family's cross-entropies: Thinc's cross-entropy at v4, dense and sparse.

Thinc's released ``CategoricalCrossentropy.v1-v3`` return ``sum(grad**2)`` as
their "loss". The v4 design its maintainers drafted (and reverted before
release) reports the true cross-entropy with the same gradient; this module
ships it, split into a dense and a sparse calculator, and adds
``from_logits`` and ``class_weights``. The focal loss is in
:mod:`thinc_losses_plus.categorical_focal`, the KL divergence in
:mod:`thinc_losses_plus.distillation`; what they share, in ``_categorical``.
The sequence loss (:mod:`thinc_losses_plus.sequence`) builds on the classes
here; the maths is in :mod:`thinc_losses_plus.functional.softmax` and its neighbours
(``checked_cross_entropy``, ``focal``, ``divergence``, ``nll``).

Gradient convention of the whole family: with respect to the **logits**.
Given probabilities (``from_logits=False``) the guesses are taken to be
``softmax(logits)`` and the gradient is ``p - target`` (scaled, weighted,
masked), which is what Thinc's ``Softmax`` layer expects: its backward pass
skips the softmax Jacobian. With ``from_logits=True`` the guesses are the
logits and the softmax is computed stably inside.
"""
from typing import Optional, Sequence, Union

import numpy

# Shared with the family's other modules (and importable from here, as they were).
from ._categorical import (  # noqa: F401
    LOG_PROB_ATOL,
    PROBABILITIES_HINT,
    Batch,
    _Categorical,
    _plain_module,
    check_label_smoothing,
    check_smoothing_for,
    dense_target,
)
from ._core import ELEMENTS, EXAMPLES, WEIGHTS, LossCalculator
from ._inputs import array_module, restore_dtype
from .functional.checked_cross_entropy import (
    checked_cross_entropy_with_integer_labels,
    checked_nll_with_integer_labels,
    checked_softmax_cross_entropy_with_integer_labels,
)
from .functional.nll import nll, nll_with_integer_labels
from .functional.softmax import softmax_cross_entropy, softmax_cross_entropy_with_integer_labels
from .labels import ClassWeights, LabelScheme


class SparseCategoricalCrossentropy(_Categorical):
    """Cross-entropy of softmax outputs against class labels (ints or names).

    For each row ``i`` with label ``y`` and target ``t`` (``1 - e`` on ``y``,
    ``e / (C - 1)`` elsewhere; ``e = label_smoothing``)::

        loss = -sum_i sum_c w_c * t_ic * log(p_ic + 1e-9) / n
        grad =  (p_i - t_i) / n                       (w = 1)
        grad =  (p_i * sum_c w_c t_ic - w * t_i) / n  (class/sample weights)

    ``n`` is the number of rows (of sequences for ``Ragged`` guesses) when
    ``normalize``, else 1; rows with a missing label count in ``n``. The
    gradient is with respect to the logits (``guesses = softmax(logits)``, as
    Thinc's ``Softmax`` layer expects: its backward pass skips the softmax Jacobian);
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
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        names: column names; string labels are mapped through them.
        missing_value: a label (int or str) whose rows are masked; None
            masks ``None`` labels.
        neg_prefix: prefix of negative labels ("not X"), e.g. "!".
        label_smoothing: ``e`` in [0, (C-1)/C): ``1 - e`` on the label,
            ``e / (C - 1)`` on every other class.
        from_logits: the guesses are logits (softmax computed inside).
        class_weights: a list indexed by class, or a dict name -> weight
            (absent names weigh 1.0).
        from_log_probs: the guesses are log-probabilities (a model ending in
            log-softmax; PyTorch's ``NLLLoss``): the loss is ``-sum w t l``
            and the gradient the exact ``-w t`` with respect to them.
            Refuses ``neg_prefix``.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import SparseCategoricalCrossentropy
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
    takes_labels = True
    reductions = (EXAMPLES, ELEMENTS, WEIGHTS)

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
        from_log_probs: bool = False,
    ):
        labels = LabelScheme(
            self.name, names=names, missing_value=missing_value, neg_prefix=neg_prefix, class_weights=class_weights
        )
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing, labels.names)
        self._init_common(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, labels=labels, from_log_probs=from_log_probs)

    def __call__(self, guesses, truths, *, sample_weight=None):
        """Return ``(gradient, loss)``, computed in one pass."""
        # The common case (probabilities, plain labels) without the general
        # path's per-call cost: what a spaCy tagger or textcat calls.
        if sample_weight is None and getattr(self, "weight", 1.0) == 1.0 and self.plain_settings():
            shape = getattr(guesses, "shape", None)
            n = shape[0] if shape else 0
            result = self.plain_case(guesses, truths, n if self.normalize else 1, True) if n else None
            if result is not None:
                grad, log_gold = result
                # sum(-l) is -sum(l) exactly: the general path's float, bit for bit.
                return grad, -float(log_gold.sum(dtype=numpy.float64)) / (n if self.normalize else 1)
        return LossCalculator.__call__(self, guesses, truths, sample_weight=sample_weight)

    def plain_settings(self) -> bool:
        """Whether the settings are those of :meth:`plain_case`: no smoothing, class
        weights or weighted reduction."""
        labels = self.labels
        return (
            not self.label_smoothing
            and labels.class_weights is None
            and getattr(self, "reduction", EXAMPLES) != WEIGHTS
        )

    def plain_case(self, guesses, truths, divisor, want_grad, overwrite: bool = False, columns=None, truths_scratch: bool = False):
        """The common case, as one checked kernel (:mod:`~thinc_losses_plus.functional.checked_cross_entropy`):
        ``(grad, log p_y)`` (``l_y`` for log-probabilities), or None for the general path
        (other inputs, or a failed check, which it then names). Call it only where
        :meth:`plain_settings` holds and there is no ``sample_weight``.
        ``overwrite``: the guesses are scratch, the gradient may be written over them.
        ``columns``: the truths already mapped by :meth:`names_to_columns` (``truths`` unused).
        ``truths_scratch``: an int array of truths is the caller's own, free to overwrite."""
        xp = _plain_module(guesses)
        if xp is None or guesses.ndim != 2 or guesses.dtype.char not in "fd" or not guesses.flags.c_contiguous:
            return None
        n, c = guesses.shape
        labels = self.labels
        if not n or (labels.names is not None and len(labels.names) != c):
            return None
        if columns is not None:
            if columns.shape[0] != n:
                return None
            indices = xp.asarray(columns)
            from_names, scratch = True, indices.dtype.itemsize == 8
        elif type(truths) is type(guesses):
            if (
                labels.missing_value is not None
                or truths.ndim != 1
                or truths.shape[0] != n
                or truths.dtype.kind not in "iu"
                or (truths.dtype.kind == "u" and truths.dtype.itemsize == 8)
            ):
                return None
            indices, from_names, scratch = truths, False, truths_scratch and truths.dtype == numpy.int64
        elif (
            type(truths) is list
            and labels.names is not None
            and len(truths) == n
            and isinstance(truths[0], str)
            and labels.missing_str not in labels.name_to_i
        ):
            try:
                indices = labels.lookup_names(truths, small=True)  # every label a name: in [0, C) already
            except (KeyError, TypeError):
                return None  # missing, negative or unknown labels: the checked path
            indices = xp.asarray(indices)
            from_names, scratch = True, indices.dtype.itemsize == 8  # an int64 array of ours
        else:
            return None
        if self.from_logits:
            return checked_softmax_cross_entropy_with_integer_labels(
                xp, guesses, indices, labels_checked=from_names, labels_scratch=scratch, divisor=divisor,
                want_grad=want_grad,
            )
        if self.from_log_probs:
            return checked_nll_with_integer_labels(
                xp, guesses, indices, atol=LOG_PROB_ATOL, labels_checked=from_names, labels_scratch=scratch,
                divisor=divisor, want_grad=want_grad,
            )
        return checked_cross_entropy_with_integer_labels(
            xp, guesses, indices, labels_checked=from_names, labels_scratch=scratch, overwrite=overwrite,
            divisor=divisor, want_grad=want_grad
        )

    def names_to_columns(self, sequences):
        """The columns of lists of names (one dictionary lookup per label) as one new host
        int64 array, or None where a label is not a name (or a sequence not a list of str)."""
        labels = self.labels
        if labels.names is None or labels.missing_str in labels.name_to_i:
            return None
        parts = []
        for seq in sequences:
            if type(seq) is not list or (seq and not isinstance(seq[0], str)):
                return None
            try:
                parts.append(labels.lookup_names(seq))  # int64: the kernel's flat index, in place
            except (KeyError, TypeError):
                return None
        return numpy.concatenate(parts) if len(parts) > 1 else parts[0]

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        if sample_weight is None and self.plain_settings():
            result = self.plain_case(guesses, truths, divisor, want_grad)
            if result is not None:
                grad, log_gold = result
                return grad, array_module(log_gold).negative(log_gold, out=log_gold)
        batch = self._batch(guesses)
        n, c = batch.work.shape
        check_smoothing_for(self.name, self.label_smoothing, c)
        labels = self.labels.to_indices(truths, n, c, batch.xp, batch.checks)
        weights = self._weights(batch, sample_weight)
        span = batch.run()
        if self.from_log_probs:
            grad, losses = nll_with_integer_labels(
                batch.xp,
                batch.work,
                labels.indices,
                label_smoothing=self.label_smoothing,
                weights=weights,
                missing=labels.missing,
                divisor=divisor,
                want_grad=want_grad,
            )
            return restore_dtype(grad, guesses), losses
        grad, losses = softmax_cross_entropy_with_integer_labels(
            batch.xp,
            batch.work,
            labels.indices,
            from_logits=self.from_logits,
            span=span,
            label_smoothing=self.label_smoothing,
            weights=weights,
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

    The gradient is with respect to the logits: ``guesses = softmax(logits)``, as
    Thinc's ``Softmax`` layer expects (its backward pass skips the softmax Jacobian).
    ``missing_value`` (an int) masks the rows whose argmax equals it.
    ``label_smoothing`` ``e`` applies to one-hot rows only: ``1 - e`` on the
    hot column, ``e / (C - 1)`` elsewhere. ``names`` are optional: they let
    ``class_weights`` be a dict and check the number of columns.

    Shapes: guesses ``(N, C)`` probabilities (logits with ``from_logits``)
    or a ``Ragged`` of them; truths ``(N, C)`` target distributions.

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        names: optional column names (for dict ``class_weights``).
        missing_value: an int; rows whose truth argmax equals it are masked.
        label_smoothing: ``e`` for one-hot rows: ``1 - e`` on the hot
            column, ``e / (C - 1)`` elsewhere.
        from_logits: the guesses are logits (softmax computed inside).
        class_weights: a list indexed by class, or a dict name -> weight.
        from_log_probs: the guesses are log-probabilities; the gradient is
            the exact ``-w t`` with respect to them (PyTorch's ``NLLLoss``).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import CategoricalCrossentropy
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
        weight: float = 1.0,
        reduction: str = "examples",
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[int] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
        from_log_probs: bool = False,
    ):
        labels = LabelScheme(
            self.name, names=names, missing_value=missing_value, class_weights=class_weights, allow_str_missing=False
        )
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing, labels.names)
        self._init_common(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, labels=labels, from_log_probs=from_log_probs)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        batch = self._batch(guesses)
        target, missing = dense_target(self.name, batch, truths, self.labels, self.label_smoothing)
        weights = self._weights(batch, sample_weight)
        span = batch.run()
        if self.from_log_probs:
            grad, losses = nll(
                batch.xp, batch.work, target, weights=weights, missing=missing, divisor=divisor, want_grad=want_grad
            )
            return restore_dtype(grad, guesses), losses
        grad, losses = softmax_cross_entropy(
            batch.xp,
            batch.work,
            target,
            from_logits=self.from_logits,
            span=span,
            weights=weights,
            missing=missing,
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses


# Moved to their own modules; importable from here as before (pickles name them so).
from .categorical_focal import CategoricalFocalCrossentropy  # noqa: E402,F401
from .distillation import KLDivergence  # noqa: E402,F401
