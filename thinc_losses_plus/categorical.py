"""The categorical (softmax) family: Thinc's cross-entropy at v4, focal loss, KL divergence.

Thinc's released ``CategoricalCrossentropy.v1-v3`` return ``sum(grad**2)`` as
their "loss". The v4 design its maintainers drafted (and reverted before
release) reports the true cross-entropy with the same gradient; this module
ships it, split into a dense and a sparse calculator, and adds
``from_logits`` and ``class_weights``, the focal loss and the KL divergence.
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
import math
from typing import Optional, Sequence, Union

import numpy

from ._checks import call_error, check_bool, check_float, setting_error
from ._core import ELEMENTS, EXAMPLES, WEIGHTS, LossCalculator
from ._inputs import Checks, array_module, as_compute_dtype, float_array, is_array, prepare_sample_weight, restore_dtype
from .functional.checked_cross_entropy import (
    checked_cross_entropy_with_integer_labels,
    checked_nll_with_integer_labels,
    checked_softmax_cross_entropy_with_integer_labels,
)
from .functional.divergence import kl_divergence
from .functional.focal import softmax_focal_cross_entropy, softmax_focal_cross_entropy_with_integer_labels
from .functional.nll import nll, nll_with_integer_labels
from .functional.softmax import (
    check_distributions,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)
from .labels import ClassWeights, LabelledColumns, LabelScheme

#: The exact array types whose module is known (cupy's is added when first seen);
#: subclasses take the general path.
_PLAIN_MODULES = {numpy.ndarray: numpy}


def _plain_module(x):
    """The array module of ``x`` if it is exactly a numpy or cupy ndarray, else None."""
    xp = _PLAIN_MODULES.get(type(x))
    if xp is None and is_array(x) and type(x).__name__ == "ndarray" and type(x).__module__.split(".")[0] == "cupy":
        xp = _PLAIN_MODULES[type(x)] = array_module(x)
    return xp


PROBABILITIES_HINT = " (they must be probabilities; use from_logits=True for logits)"


class Batch:
    """One call's validated guesses: the compute-dtype array, its xp, its checks."""

    def __init__(self, name: str, guesses, *, from_logits: bool, from_log_probs: bool = False):
        float_array(name, "guesses", guesses, ndim=2)
        self.xp = array_module(guesses)
        self.work = as_compute_dtype(guesses)
        self.checks = Checks(name, self.xp)
        self.from_logits = from_logits
        if from_log_probs:
            # Log-probabilities: finite and <= 0 (up to a softmax's rounding).
            if self.work.size:
                lp = self.work
                bad = ~self.xp.isfinite(lp.sum(dtype=self.xp.float64)) | (lp.max() > LOG_PROB_ATOL)
                self.checks.fail_if(bad, "guesses", lambda: _log_prob_problem(self.xp, lp))
        elif from_logits:
            # The logits' range (in float64: no overflow) decides the softmax's
            # shift and is finite exactly when every logit is: one value, two uses.
            if self.work.size:
                z = self.work
                self.checks.request(z.max().astype("float64") - z.min().astype("float64"))
        else:
            check_distributions(self.checks, "guesses", self.work, hint=PROBABILITIES_HINT, dtype=guesses.dtype)

    def run(self) -> Optional[float]:
        """Run the checks (one transfer); return the logits' span for the softmax."""
        values = self.checks.run()
        if not values:
            return None
        span = values[0]
        if not math.isfinite(span):
            raise call_error(self.checks.name, "guesses", "contains NaN or infinite values")
        return span


#: Largest log-probability accepted: log_softmax can round to a tiny positive value.
LOG_PROB_ATOL = 1e-4


def _log_prob_problem(xp, lp) -> str:
    if not bool(xp.isfinite(lp).all()):
        return "contains NaN or infinite values"
    return (
        f"must be log-probabilities (<= 0), got {float(lp.max()):.6g} "
        "(use from_logits=True for logits, or pass probabilities)"
    )


class _Categorical(LabelledColumns, LossCalculator):
    """Settings and conversions shared by the softmax-family calculators."""

    accepts_ragged = True
    softmax_family = True

    def _init_common(self, *, normalize: bool, weight: float = 1.0, reduction: str = "examples", from_logits: bool, labels: LabelScheme, from_log_probs: bool = False) -> None:
        LossCalculator.__init__(self, normalize=normalize, weight=weight, reduction=reduction)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.from_log_probs = check_bool(self.name, "from_log_probs", from_log_probs)
        if self.from_logits and self.from_log_probs:
            raise setting_error(self.name, "from_log_probs", "and 'from_logits' exclude each other: the guesses are one or the other")
        if self.from_log_probs and labels.neg_prefix is not None:
            raise setting_error(
                self.name, "neg_prefix", "needs probabilities or logits: a negative label has no log-likelihood to maximise"
            )
        self.labels = labels

    def with_names(self, names: Sequence[str]):
        """A copy with ``names`` set; ``label_smoothing`` is checked against C = len(names)."""
        clone = super().with_names(names)
        check_label_smoothing(self.name, getattr(clone, "label_smoothing", 0.0), clone.labels.names)
        return clone

    def _batch(self, guesses) -> Batch:
        batch = Batch(self.name, guesses, from_logits=self.from_logits, from_log_probs=self.from_log_probs)
        self.labels.check_n_classes(batch.work.shape[1])
        return batch

    def weight_total(self, guesses, truths, *, sample_weight=None):
        """``reduction = "weights"``: the sum over rows of ``w_y`` times the row's sample
        weight, masked rows excluded (PyTorch's weighted cross-entropy ``"mean"``)."""
        if is_array(truths) and truths.dtype.kind == "f":
            raise call_error(self.name, "reduction", "'weights' needs class labels as truths, not target distributions")
        work, xp = as_compute_dtype(guesses), array_module(guesses)
        n, c = work.shape
        labels = self.labels.to_indices(truths, n, c, xp)
        rows = xp.arange(n)
        class_w = self.labels.class_weight_array(c, xp, work.dtype)
        weights = xp.ones((n,), dtype=work.dtype) if class_w is None else class_w[0, labels.indices]
        sample = prepare_sample_weight(self.name, sample_weight, (n, c), xp, work.dtype)
        if sample is not None:
            weights = weights * (sample[:, 0] if sample.shape[1] == 1 else sample[rows, labels.indices])
        if labels.missing is not None:
            weights = xp.where(labels.missing, 0.0, weights)
        return weights.sum(dtype=xp.float64)

    def _weights(self, batch: Batch, sample_weight, scale: float = 1.0):
        """Class weights times sample weights, broadcastable to the guesses (or None)."""
        work, xp = batch.work, batch.xp
        n, c = work.shape
        weights = prepare_sample_weight(self.name, sample_weight, (n, c), xp, work.dtype, batch.checks)
        class_w = self.labels.class_weight_array(c, xp, work.dtype)
        if class_w is not None:
            weights = class_w if weights is None else weights * class_w
        if scale != 1.0:
            weights = xp.full((1, c), scale, dtype=work.dtype) if weights is None else weights * scale
        return weights


def check_label_smoothing(name: str, value, names: Optional[Sequence[str]] = None) -> float:
    """0 <= e < 1, and e < (C-1)/C as soon as C is known.

    With ``names`` (at construction, or when a spaCy component binds its
    labels) C = len(names) is known and the bound is checked then; without,
    :func:`check_smoothing_for` checks it at call time, against the columns.
    """
    value = check_float(name, "label_smoothing", value, low=0.0, high=1.0, high_open=True)
    if names:
        _check_smoothing_bound(name, value, len(names), setting_error, f" (the {len(names)} names)")
    return value


def check_smoothing_for(name: str, label_smoothing: float, n_classes: int) -> None:
    """Call time: e < (C-1)/C for the guesses' C columns."""
    _check_smoothing_bound(name, label_smoothing, n_classes, call_error, "")


def _check_smoothing_bound(name: str, label_smoothing: float, n_classes: int, error, source: str) -> None:
    if label_smoothing and label_smoothing >= (n_classes - 1) / n_classes:
        raise error(
            name,
            "label_smoothing",
            f"must be < (C-1)/C = {(n_classes - 1) / n_classes:g} for C = {n_classes} classes{source}, "
            f"got {label_smoothing:g}",
        )


def dense_target(name: str, batch: Batch, truths, labels: LabelScheme, label_smoothing: float):
    """Validate dense truths (with the batch's checks); return the (smoothed) target and the missing rows."""
    work, xp = batch.work, batch.xp
    if not is_array(truths) or truths.dtype.kind != "f":
        kind = truths.dtype if is_array(truths) else type(truths).__name__
        raise call_error(
            name, "truths", f"must be a float array of target distributions, got {kind} "
            "(for class labels use SparseCategoricalCrossentropy)", TypeError
        )
    if tuple(truths.shape) != tuple(work.shape):
        raise call_error(name, "truths", f"must have the guesses' shape {tuple(work.shape)}, got {tuple(truths.shape)}")
    target = xp.ascontiguousarray(xp.asarray(truths).astype(work.dtype, copy=False))
    missing = labels.dense_missing(target, xp)
    # Masked rows may hold anything (spaCy passes zeros): they are checked as uniform rows.
    checked = target if missing is None else xp.where(missing[:, None], 1.0 / max(work.shape[1], 1), target)
    check_distributions(batch.checks, "truths", checked, dtype=truths.dtype)
    if label_smoothing:
        n_classes = work.shape[1]
        check_smoothing_for(name, label_smoothing, n_classes)
        if checked.size:
            one_hot = ((checked == 0) | (checked == 1)) if missing is None else ((checked == 0) | (checked == 1) | missing[:, None])
            batch.checks.fail_if(~one_hot.all(), "label_smoothing", lambda: "applies to one-hot truth rows only; some rows are soft")
        off = label_smoothing / (n_classes - 1)
        target = target * (1.0 - label_smoothing - off) + off
    return target, missing


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


class CategoricalFocalCrossentropy(_Categorical):
    """Focal loss (Lin et al., 2017) for softmax outputs.

    Down-weights well-classified rows by ``(1 - p)^gamma``::

        loss = -alpha * sum_i sum_c w_c * t_ic * (1 - p_ic)^gamma * log(p_ic) / n

    With ``gamma = 0`` and ``alpha = 1`` this is the categorical
    cross-entropy. The gradient is the exact derivative with respect to the
    logits: ``(g - p * sum_c g_c) / n`` with
    ``g_c = alpha w_c t_c (gamma (1-p_c)^(gamma-1) p_c log p_c - (1-p_c)^gamma)``
    (``log p`` is ``log(p + 1e-9)`` for probability guesses). Truths: dense
    target rows, or labels (ints or names) with the settings of
    :class:`SparseCategoricalCrossentropy`. A negative label ``neg_prefix + y``
    scores "not y" as ``-alpha w_y p_y^gamma log(1 - p_y)`` (gradient on
    column y only). ``alpha`` is a scalar factor (Keras); per-class balancing
    is ``class_weights``.

    Shapes: guesses ``(N, C)`` probabilities (logits with ``from_logits``)
    or a ``Ragged`` of them; truths ``(N, C)`` target distributions or ``N``
    labels.

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        gamma: focusing parameter, >= 0 (0 gives the cross-entropy).
        alpha: scalar factor on the whole loss, > 0.
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
        >>> from thinc_losses_plus import CategoricalFocalCrossentropy
        >>> loss_calc = CategoricalFocalCrossentropy(gamma=2.0)
        >>> guesses = numpy.asarray([[0.9, 0.1], [0.5, 0.5]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, [0, 1]), 5)  # -(0.01 log 0.9 + 0.25 log 0.5) / 2
        0.08717

    Config::

        [loss]
        @losses = "CategoricalFocalCrossentropy.v1"
        gamma = 2.0
        class_weights = [1.0, 3.0]

    References: Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object
    Detection. ICCV 2017. https://arxiv.org/abs/1708.02002
    """

    name = "CategoricalFocalCrossentropy"
    takes_labels = True
    reductions = (EXAMPLES, ELEMENTS, WEIGHTS)

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        gamma: float = 2.0,
        alpha: float = 1.0,
        class_weights: ClassWeights = None,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
    ):
        labels = LabelScheme(
            self.name, names=names, missing_value=missing_value, neg_prefix=neg_prefix, class_weights=class_weights
        )
        self.gamma = check_float(self.name, "gamma", gamma, low=0.0, high=math.inf, high_open=True)
        self.alpha = check_float(self.name, "alpha", alpha, low=0.0, high=math.inf, low_open=True, high_open=True)
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing, labels.names)
        self._init_common(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, labels=labels)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        batch = self._batch(guesses)
        work, xp = batch.work, batch.xp
        n, c = work.shape
        settings = dict(gamma=self.gamma, from_logits=self.from_logits, divisor=divisor, want_grad=want_grad)
        negative = indices = None
        if is_array(truths) and truths.dtype.kind == "f":
            # Dense target rows: missing_value is an argmax (an int, or Thinc 9.1's string of one).
            target, missing = dense_target(self.name, batch, truths, self.labels, self.label_smoothing)
        else:
            check_smoothing_for(self.name, self.label_smoothing, c)
            indices, missing, negative = self.labels.to_indices(truths, n, c, xp, batch.checks)
            if not self.label_smoothing:  # one-hot targets: the O(N) kernel
                weights = self._weights(batch, sample_weight, scale=self.alpha)
                span = batch.run()
                grad, losses = softmax_focal_cross_entropy_with_integer_labels(
                    xp, work, indices, span=span, weights=weights, missing=missing, negative=negative, **settings
                )
                return restore_dtype(grad, guesses), losses
        weights = self._weights(batch, sample_weight, scale=self.alpha)
        span = batch.run()
        if indices is not None:
            off = self.label_smoothing / (c - 1)
            target = xp.full((n, c), off, dtype=work.dtype)
            target[xp.arange(n), indices] = 1.0 - self.label_smoothing
            if negative is not None:
                target[negative] = 0
        grad, losses = softmax_focal_cross_entropy(
            xp, work, target, span=span, weights=weights, missing=missing, negative=negative, labels=indices, **settings
        )
        return restore_dtype(grad, guesses), losses


class KLDivergence(_Categorical):
    """Kullback-Leibler divergence of softmax outputs from target distributions.

    For knowledge distillation: ``q = softmax(z / T)`` with ``T = temperature``::

        loss = T^2 * sum_i sum_c t_ic * (log t_ic - log q_ic) / n     (0 log 0 = 0)
        grad = T * (q_i * sum_c t_ic - t_i) / n

    The ``T^2`` factor (Hinton et al., 2015) keeps gradient magnitudes
    independent of ``T``. The gradient is with respect to the logits ``z``:
    the guesses themselves with ``from_logits=True``, else ``log p`` (for
    ``T = 1``, ``q = p`` and ``log q = log(p + 1e-9)``). Equals PyTorch's
    ``kl_div(log_q, t, reduction="sum") * T^2 / n``. The truths (teacher
    distributions) are used as given.

    Shapes: guesses ``(N, C)`` probabilities (logits with ``from_logits``);
    truths ``(N, C)`` target distributions.

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        from_logits: the guesses are logits.
        temperature: ``T`` > 0; the student's softmax is taken of ``z / T``.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import KLDivergence
        >>> loss_calc = KLDivergence()
        >>> guesses = numpy.asarray([[0.5, 0.5]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, truths), 5)  # log 2
        0.69315

    Config::

        [loss]
        @losses = "KLDivergence.v1"
        from_logits = true
        temperature = 2.0

    References: Hinton, Vinyals, Dean. Distilling the Knowledge in a Neural
    Network. 2015. https://arxiv.org/abs/1503.02531
    """

    name = "KLDivergence"
    elementwise = True  # PyTorch's kl_div "mean" divides by N x C
    accepts_ragged = False

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", from_logits: bool = False, temperature: float = 1.0):
        self.temperature = check_float(
            self.name, "temperature", temperature, low=0.0, high=math.inf, low_open=True, high_open=True
        )
        self._init_common(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, labels=LabelScheme(self.name))

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        batch = self._batch(guesses)
        target, _ = dense_target(self.name, batch, truths, self.labels, 0.0)
        weights = self._weights(batch, sample_weight)
        span = batch.run()
        xp, work = batch.xp, batch.work
        del batch  # and with it the checks' diagnostics (row sums of N): peak memory
        grad, losses = kl_divergence(
            xp,
            work,
            target,
            from_logits=self.from_logits,
            temperature=self.temperature,
            span=span if self.from_logits else None,
            weights=weights,
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses
