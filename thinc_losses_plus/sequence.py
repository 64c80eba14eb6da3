"""Cross-entropy over a batch of sequences: Thinc's sequence loss at v4."""
import copy
from typing import Optional, Sequence, Union

import numpy

from ._checks import call_error, check_bool, setting_error
from ._core import Evaluation, LossCalculator
from ._inputs import array_module, is_array, sequence_list, unpack_sequences
from .categorical import CategoricalCrossentropy, SparseCategoricalCrossentropy
from .labels import ClassWeights, check_missing_value

NAME = "SequenceCategoricalCrossentropy"


# The per-sequence scorers: the flat calculators under this calculator's name,
# so that every error they raise names the calculator the user configured.
class _SequenceLabels(SparseCategoricalCrossentropy):
    name = NAME


class _SequenceTargets(CategoricalCrossentropy):
    name = NAME


class SequenceCategoricalCrossentropy(LossCalculator):
    """Cross-entropy over a batch of sequences (Thinc's sequence loss at v4).

    Guesses are a list of (T_i, C) arrays, truths a list of the same length:
    label sequences (``sparse=True``: int arrays, lists of ints or names) or
    (T_i, C) target distributions (``sparse=False``). Each sequence is scored
    by :class:`SparseCategoricalCrossentropy` or
    :class:`CategoricalCrossentropy` without normalisation; then::

        grads = [grad_i / n for each sequence]   (n = number of sequences if normalize, else 1)
        loss  = sum_i loss_i                     (the unnormalised sum, as Thinc's design)

    The gradient is with respect to the logits (``guesses = softmax(logits)``, as
    Thinc's ``Softmax`` layer expects).
    ``[]`` gives ``([], 0.0)``. ``get_loss_per_example`` returns one (T_i,)
    array of row losses per sequence. ``sample_weight`` is None or a list with
    one weight array per sequence (``(T_i,)``, ``(T_i, 1)`` or ``(T_i, C)``).
    Errors name this calculator, whichever inner calculator finds them.

    Shapes: guesses a list of ``(T_i, C)`` arrays, a ``Ragged`` of them, a
    ``Padded`` (Thinc's time-major ``(T, B, C)`` batch) or a tuple
    ``(array, lengths)`` of a batch-major ``(B, T, C)`` padded array and the
    length of each sequence; the gradient comes back in the same container
    (zeros on padding; a padded array for the tuple). Truths: a list of
    ``T_i`` labels (``sparse``) or of ``(T_i, C)`` distributions per sequence.

    Args:
        normalize: divide the gradient by the number of sequences.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        sparse: the truths are labels (True) or dense distributions (False).
        names: column names; string labels are mapped through them.
        missing_value: a label (int or str) whose rows are masked; None
            masks ``None`` labels.
        neg_prefix: prefix of negative labels ("not X"), e.g. "!".
        label_smoothing: ``e`` in [0, (C-1)/C): ``1 - e`` on the label,
            ``e / (C - 1)`` on every other class.
        from_logits: the guesses are logits (softmax computed inside).
        class_weights: a list indexed by class, or a dict name -> weight
            (absent names weigh 1.0).
        from_log_probs: the guesses are log-probabilities; the gradient is
            the exact ``-w t`` with respect to them (PyTorch's ``NLLLoss``).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import SequenceCategoricalCrossentropy
        >>> loss_calc = SequenceCategoricalCrossentropy(names=["A", "B"])
        >>> guesses = [numpy.asarray([[0.5, 0.5]], dtype="f"), numpy.asarray([[0.25, 0.75]], dtype="f")]
        >>> grads, loss = loss_calc(guesses, [["A"], ["B"]])
        >>> round(loss, 4)  # -(log 0.5 + log 0.75)
        0.9808
        >>> [g.tolist() for g in grads]
        [[[-0.25, 0.25]], [[0.125, -0.125]]]

    Config::

        [loss]
        @losses = "SequenceCategoricalCrossentropy.v4"
        normalize = false
        neg_prefix = "!"
    """

    reductions = ("examples",)  # the v4 semantics: the loss is the sum, the gradient / sequences

    name = NAME
    softmax_family = True

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        sparse: bool = True,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
        from_log_probs: bool = False,
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.sparse = check_bool(self.name, "sparse", sparse)
        settings = dict(
            label_smoothing=label_smoothing, from_logits=from_logits, class_weights=class_weights, from_log_probs=from_log_probs
        )
        if self.sparse:
            self.scorer = _SequenceLabels(
                normalize=False, names=names, missing_value=missing_value, neg_prefix=neg_prefix, **settings
            )
        else:
            if neg_prefix is not None:
                raise setting_error(self.name, "neg_prefix", "applies to label truths only (sparse=True)")
            # Dense truths: an argmax, given as an int or (Thinc 9.1) as the string of one.
            missing_value = check_missing_value(self.name, missing_value, allow_str=False)
            self.scorer = _SequenceTargets(normalize=False, names=names, missing_value=missing_value, **settings)

    # The settings, as configured, are the scorer's.
    names = property(lambda self: self.scorer.names)
    missing_value = property(lambda self: self.scorer.missing_value)
    neg_prefix = property(lambda self: self.scorer.neg_prefix)
    class_weights = property(lambda self: self.scorer.class_weights)
    label_smoothing = property(lambda self: self.scorer.label_smoothing)
    from_logits = property(lambda self: self.scorer.from_logits)
    from_log_probs = property(lambda self: self.scorer.from_log_probs)

    def with_names(self, names: Sequence[str]) -> "SequenceCategoricalCrossentropy":
        """A copy of this calculator with ``names`` set (for spaCy components)."""
        clone = copy.copy(self)
        clone.scorer = self.scorer.with_names(names)
        return clone

    def with_class_weights(self, class_weights: ClassWeights) -> "SequenceCategoricalCrossentropy":
        """A copy of this calculator with ``class_weights`` set (e.g. counted ``"balanced"`` weights)."""
        clone = copy.copy(self)
        clone.scorer = self.scorer.with_class_weights(class_weights)
        return clone

    def count_examples(self, guesses) -> int:
        return len(unpack_sequences(self.name, guesses)[0])

    def __call__(self, guesses, truths, *, sample_weight=None):
        """Return ``(gradients, loss)``, computed in one pass."""
        if getattr(self, "weight", 1.0) != 1.0:
            return LossCalculator.__call__(self, guesses, truths, sample_weight=sample_weight)
        evaluation, losses = self._score(guesses, truths, sample_weight=sample_weight, want_grad=True)
        if losses is None or not losses.size:
            return evaluation.grad, evaluation.loss()
        # The sum of the rows' losses, as Evaluation.loss() sums their concatenation, without it.
        return evaluation.grad, float(losses.sum(dtype=numpy.float64))

    def evaluate(self, guesses, truths, *, sample_weight=None, want_grad: bool = True) -> Evaluation:
        """Score the concatenated sequences once; the loss is the unnormalised sum (divisor 1)."""
        return self._score(guesses, truths, sample_weight=sample_weight, want_grad=want_grad)[0]

    def _score(self, guesses, truths, *, sample_weight=None, want_grad: bool = True):
        """The evaluation, and the row losses of all sequences as one array (None for no sequences)."""
        sequences, pack = unpack_sequences(self.name, guesses)
        guesses = sequence_list(self.name, sequences, what="(T, C) arrays, one per sequence")
        if not isinstance(truths, (list, tuple)):
            raise call_error(self.name, "truths", f"must be a list (one entry per sequence), got {type(truths).__name__}", TypeError)
        if len(guesses) != len(truths):
            raise call_error(self.name, "truths", f"has {len(truths)} sequences but the guesses have {len(guesses)}")
        if not guesses:
            return Evaluation(pack([]) if want_grad else None, [], 1), None
        xp = array_module(guesses[0])
        lengths = [int(g.shape[0]) for g in guesses]
        # Sequences that are consecutive rows of one array (what Thinc's with_array and a
        # Ragged hand over) are scored in place; others are joined in a buffer of ours.
        batch = guesses[0] if len(guesses) == 1 else consecutive_rows(guesses)
        scratch = batch is None
        if scratch:
            batch = xp.concatenate(guesses)
        _check_truths(self.name, truths, lengths)
        divisor = len(guesses) if self.normalize else 1
        result = flat_truths = None
        if self.sparse and sample_weight is None and self.scorer.plain_settings():
            # The plain kernel; a joined buffer becomes the gradient (no second array of its
            # size), and names are looked up sequence by sequence (no list of all labels).
            columns = self.scorer.names_to_columns(truths)
            if columns is None:
                flat_truths = _concatenate_truths(self.name, xp, truths, lengths, self.sparse)
            overwrite = scratch and want_grad
            joined = len(truths) > 1 and all(is_array(t) for t in truths)  # a concatenation of ours
            result = self.scorer.plain_case(
                batch, flat_truths, divisor, want_grad, overwrite=overwrite, columns=columns, truths_scratch=joined
            )
            if result is not None:
                result = result[0], xp.negative(result[1], out=result[1])
        if result is None:
            if flat_truths is None:
                flat_truths = _concatenate_truths(self.name, xp, truths, lengths, self.sparse)
            flat_weight = _concatenate_weights(self.name, xp, sample_weight, lengths, batch)
            result = self.scorer.compute(batch, flat_truths, sample_weight=flat_weight, divisor=divisor, want_grad=want_grad)
        grad, losses = result
        bounds = numpy.cumsum([0] + lengths).tolist()
        per_sequence = [losses[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
        grads = None
        if grad is not None:
            grads = pack([grad[start:end] for start, end in zip(bounds[:-1], bounds[1:])])
        return Evaluation(grads, per_sequence, 1), losses


def consecutive_rows(arrays):
    """``arrays`` as one array without a copy when they are consecutive row ranges of one
    C-contiguous 2-d array (slices of it, in order), else None."""
    base = arrays[0].base
    if base is None or not is_array(base) or base.ndim != 2 or not base.flags.c_contiguous or not base.size:
        return None
    row_bytes = base.strides[0]
    origin = _address(base)
    start, rest = divmod(_address(arrays[0]) - origin, row_bytes)
    if rest or start < 0:
        return None
    row = start
    for a in arrays:
        if a.base is not base or a.ndim != 2 or a.shape[1] != base.shape[1] or not a.flags.c_contiguous:
            return None
        if a.shape[0] and _address(a) != origin + row * row_bytes:
            return None
        row += a.shape[0]
    return base[start:row] if row <= base.shape[0] else None


def _address(a) -> int:
    """The device or host address of an array's first element (cupy's ``data.ptr``, numpy's interface)."""
    ptr = getattr(getattr(a, "data", None), "ptr", None)
    return ptr if ptr is not None else a.__array_interface__["data"][0]


def _check_truths(name, truths, lengths):
    """Each sequence of truths is an array or a list with one entry per row of its guesses."""
    for i, (t, length) in enumerate(zip(truths, lengths)):
        size = t.shape[0] if is_array(t) and t.ndim else len(t) if isinstance(t, (list, tuple)) else None
        if size is None:
            raise call_error(name, "truths", f"sequence {i} must be an array or a list, got {type(t).__name__}", TypeError)
        if size != length:
            raise call_error(name, "truths", f"sequence {i} has {size} entries but its guesses have {length} rows")


def _concatenate_truths(name, xp, truths, lengths, sparse):
    _check_truths(name, truths, lengths)
    if all(is_array(t) for t in truths):
        kinds = {t.dtype.kind for t in truths}
        if len(kinds) > 1 or (not sparse and len({t.ndim for t in truths}) > 1):
            raise call_error(name, "truths", f"mixes arrays of different kinds ({sorted(str(t.dtype) for t in truths)})", TypeError)
        return xp.concatenate([xp.asarray(t) for t in truths]) if len(truths) > 1 else truths[0]
    if not sparse:
        raise call_error(name, "truths", "must be (T_i, C) arrays of target distributions when sparse=False", TypeError)
    flat = []
    for t in truths:
        flat.extend(t.tolist() if is_array(t) else t)
    return flat


def _concatenate_weights(name, xp, sample_weight, lengths, batch):
    if sample_weight is None:
        return None
    if not isinstance(sample_weight, (list, tuple)) or len(sample_weight) != len(lengths):
        raise call_error(name, "sample_weight", f"must be None or a list with one array per sequence ({len(lengths)})", TypeError)
    width = batch.shape[1]
    parts = []
    for i, (w, length) in enumerate(zip(sample_weight, lengths)):
        w = xp.asarray(w, dtype=batch.dtype)
        if w.shape in ((length,), (length, 1)):
            w = w.reshape(length, 1)
        elif w.shape != (length, width):
            raise call_error(
                name, "sample_weight",
                f"sequence {i} must have shape ({length},), ({length}, 1) or ({length}, {width}), got {tuple(w.shape)}",
            )
        parts.append(w)
    if any(p.shape[1] != 1 for p in parts):  # some per element: all per element
        parts = [xp.broadcast_to(p, (p.shape[0], width)) for p in parts]
    return xp.concatenate(parts)
