"""Cross-entropy over a batch of sequences: Thinc's sequence loss at v4."""
import copy
from typing import Optional, Sequence, Union

from thinc.backends import get_array_ops

from ._base import LossCalculator
from ._checks import call_error, check_bool, float_array, is_array, setting_error
from .categorical import ClassWeights, CategoricalCrossentropy, SparseCategoricalCrossentropy


class SequenceCategoricalCrossentropy(LossCalculator):
    """Cross-entropy over a batch of sequences (Thinc's sequence loss at v4).

    Guesses are a list of (T_i, C) arrays, truths a list of the same length:
    label sequences (``sparse=True``: int arrays, lists of ints or names) or
    (T_i, C) target distributions (``sparse=False``). Each sequence is scored
    by :class:`SparseCategoricalCrossentropy` or
    :class:`CategoricalCrossentropy` without normalisation; then::

        grads = [grad_i / n for each sequence]   (n = number of sequences if normalize, else 1)
        loss  = sum_i loss_i                     (the unnormalised sum, as Thinc's design)

    The gradient is with respect to the logits (see the module docstring).
    ``[]`` gives ``([], 0.0)``. ``get_loss_per_example`` returns one (T_i,)
    array of row losses per sequence. ``sample_weight`` is None or a list with
    one weight array per sequence.

    Shapes: guesses a list of ``(T_i, C)`` arrays; truths a list of ``T_i``
    labels (``sparse``) or of ``(T_i, C)`` distributions per sequence.

    Args:
        normalize: divide the gradient by the number of sequences.
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

    Example:
        >>> import numpy
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

    name = "SequenceCategoricalCrossentropy"
    softmax_family = True

    def __init__(
        self,
        *,
        normalize: bool = True,
        sparse: bool = True,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
    ):
        super().__init__(normalize=normalize)
        self.sparse = check_bool(self.name, "sparse", sparse)
        settings = dict(label_smoothing=label_smoothing, from_logits=from_logits, class_weights=class_weights)
        if self.sparse:
            inner = SparseCategoricalCrossentropy(
                normalize=False, names=names, missing_value=missing_value, neg_prefix=neg_prefix, **settings
            )
        else:
            if neg_prefix is not None:
                raise setting_error(self.name, "neg_prefix", "applies to label truths only (sparse=True)")
            if isinstance(missing_value, str):
                raise setting_error(self.name, "missing_value", "must be an int (an argmax) when sparse=False", TypeError)
            inner = CategoricalCrossentropy(normalize=False, names=names, missing_value=missing_value, **settings)
        inner.name = self.name  # errors name the calculator the user configured
        self._inner = inner

    def __getattr__(self, attr):
        # names, missing_value, label_smoothing, ... are the inner calculator's settings
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._inner, attr)

    def with_names(self, names: Sequence[str]) -> "SequenceCategoricalCrossentropy":
        """A copy of this calculator with ``names`` set (for spaCy components)."""
        clone = copy.copy(self)
        clone._inner = self._inner.with_names(names)
        return clone

    def count_examples(self, guesses) -> int:
        return len(guesses)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        if not isinstance(guesses, (list, tuple)):
            raise call_error(self.name, "guesses", f"must be a list of 2d arrays, got {type(guesses).__name__}", TypeError)
        if not isinstance(truths, (list, tuple)):
            raise call_error(self.name, "truths", f"must be a list (one entry per sequence), got {type(truths).__name__}", TypeError)
        if len(guesses) != len(truths):
            raise call_error(self.name, "truths", f"has {len(truths)} sequences but the guesses have {len(guesses)}")
        if sample_weight is not None and (not isinstance(sample_weight, (list, tuple)) or len(sample_weight) != len(guesses)):
            raise call_error(self.name, "sample_weight", "must be None or a list with one array per sequence")
        if not guesses:
            return [], []
        for g in guesses:
            float_array(self.name, "guesses", g, ndim=2)
        xp = get_array_ops(guesses[0]).xp
        lengths = [int(g.shape[0]) for g in guesses]
        batch = xp.concatenate(guesses) if len(guesses) > 1 else guesses[0]
        flat_truths = _concatenate_truths(self.name, xp, truths, lengths, self.sparse)
        flat_weight = None
        if sample_weight is not None:
            flat_weight = xp.concatenate(
                [xp.asarray(w, dtype=batch.dtype).reshape(length, -1) for w, length in zip(sample_weight, lengths)]
            )
        grad, losses = self._inner.compute(
            batch, flat_truths, sample_weight=flat_weight, divisor=divisor, want_grad=want_grad
        )
        ends = list(_cumsum(lengths))
        per_sequence = [losses[start:end] for start, end in zip([0] + ends[:-1], ends)]
        grads = None
        if grad is not None:
            grads = [grad[start:end] for start, end in zip([0] + ends[:-1], ends)]
        return grads, per_sequence

    def _reduce(self, result) -> float:
        # The loss is the sum of the per-sequence unnormalised losses.
        return float(sum(float(losses.sum(dtype="float64")) for losses in result.per_example))


def _cumsum(values):
    total = 0
    for v in values:
        total += v
        yield total


def _concatenate_truths(name, xp, truths, lengths, sparse):
    flat = []
    for i, (t, length) in enumerate(zip(truths, lengths)):
        size = t.shape[0] if is_array(t) else len(t) if isinstance(t, (list, tuple)) else None
        if size is None:
            raise call_error(name, "truths", f"sequence {i} must be an array or a list, got {type(t).__name__}", TypeError)
        if size != length:
            raise call_error(name, "truths", f"sequence {i} has {size} entries but its guesses have {length} rows")
    if not sparse or all(is_array(t) for t in truths):
        return xp.concatenate([xp.asarray(t) for t in truths]) if len(truths) > 1 else truths[0]
    for t in truths:
        flat.extend(t.tolist() if is_array(t) else t)
    return flat
