"""What the softmax family's calculators share: their validated guesses (:class:`Batch`), their
settings and conversions (:class:`_Categorical`), the label-smoothing checks and dense targets.

The calculators are in :mod:`thinc_losses_plus.categorical` (the cross-entropies),
:mod:`thinc_losses_plus.categorical_focal` and :mod:`thinc_losses_plus.distillation`.
"""
import math
from typing import Optional, Sequence

import numpy

from ._checks import call_error, check_bool, check_float, setting_error
from ._core import LossCalculator
from ._inputs import Checks, array_module, as_compute_dtype, float_array, is_array, prepare_sample_weight
from .functional.softmax import check_distributions
from .labels import LabelledColumns, LabelScheme

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
