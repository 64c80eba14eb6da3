"""Class weights counted from the truths of a training corpus.

``class_weights = "balanced"`` in a loss block means the weights
``n_examples / (n_classes * n_c)`` (scikit-learn's ``class_weight="balanced"``),
where ``n_c`` counts the examples of class ``c``. A spaCy component counts
them in ``initialize``; a plain Thinc user calls :func:`balanced_class_weights`
over the truths and binds the result::

    >>> from thinc_losses_plus import SparseCategoricalCrossentropy
    >>> from thinc_losses_plus.class_weights import balanced_class_weights
    >>> weights = balanced_class_weights([["A", "A", "A", "B"]], labels=["A", "B", "C"])
    >>> weights
    {'A': 0.4444444444444444, 'B': 1.3333333333333333, 'C': 1.0}
    >>> loss_calc = SparseCategoricalCrossentropy(names=["A", "B", "C"], class_weights="balanced")
    >>> loss_calc = loss_calc.with_class_weights(weights)

Labels never seen weigh 1.0 (they never occur as a target; any finite value
would do, and 1.0 leaves smoothed or negative terms as unweighted).
:func:`effective_number_weights` gives the weighting of Cui et al. (2019),
``(1 - beta) / (1 - beta^n_c)`` normalised to sum to the number of classes.

References: Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on
Effective Number of Samples. CVPR 2019. https://arxiv.org/abs/1901.05555
"""
from collections import Counter
from typing import Dict, Hashable, Iterable, Mapping, Optional, Sequence


def count_labels(truths: Iterable) -> Counter:
    """Count the labels of a corpus: an iterable of labels, or of sequences of labels.

    ``None`` (a missing label) is not counted.
    """
    counts: Counter = Counter()
    for item in truths:
        if isinstance(item, (list, tuple)):
            counts.update(label for label in item if label is not None)
        elif hasattr(item, "tolist") and getattr(item, "ndim", 0) >= 1:
            counts.update(label for label in item.tolist() if label is not None)
        elif item is not None:
            counts[item.tolist() if hasattr(item, "tolist") else item] += 1
    return counts


def balanced_from_counts(counts: Mapping[Hashable, int], labels: Sequence[Hashable]) -> Dict[Hashable, float]:
    """``n_examples / (n_classes * n_c)`` for each of ``labels``; 1.0 for labels never seen."""
    labels = list(labels)
    n_examples = sum(counts.get(label, 0) for label in labels)
    n_classes = len(labels)
    return {
        label: (n_examples / (n_classes * counts[label]) if counts.get(label, 0) > 0 else 1.0) for label in labels
    }


def balanced_class_weights(truths: Iterable, labels: Optional[Sequence[Hashable]] = None) -> Dict[Hashable, float]:
    """Balanced weights counted over ``truths`` (labels, or sequences of labels).

    ``labels``: every class, in column order (default: the labels seen, sorted).
    """
    counts = count_labels(truths)
    if labels is None:
        labels = sorted(counts)
    return balanced_from_counts(counts, labels)


def effective_number_weights(
    truths: Iterable, labels: Optional[Sequence[Hashable]] = None, *, beta: float = 0.999
) -> Dict[Hashable, float]:
    """Cui et al.'s weights ``(1 - beta) / (1 - beta^n_c)``, scaled to sum to the number of classes."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"Cannot count effective-number weights: 'beta' must be in [0, 1), got {beta!r}")
    counts = count_labels(truths)
    if labels is None:
        labels = sorted(counts)
    raw = {}
    for label in labels:
        n = counts.get(label, 0)
        raw[label] = (1.0 - beta) / (1.0 - beta**n) if n > 0 else None
    seen = [w for w in raw.values() if w is not None]
    scale = (len(seen) / sum(seen)) if seen else 1.0
    return {label: (w * scale if w is not None else 1.0) for label, w in raw.items()}
