"""``class_weights = "balanced"`` in a spaCy component's loss block.

At ``initialize`` the component counts its classes over the training corpus
(what counts as one example is the component's choice, stated in the table
and in docs/spacy.md: documents for ``textcat``, tokens for the tagger
family and the lemmatizer, spans for ``spancat``), computes
``n_examples / (n_classes * n_c)`` with
:func:`thinc_losses_plus.class_weights.balanced_from_counts` (labels never
seen weigh 1.0), prints them as a table and keeps them in the component's
``cfg`` under ``"loss_class_weights"`` (one entry per loss of a
``WeightedSum``, keyed by its path; each weight as the ``repr`` of the float,
since spaCy's JSON writer rounds floats to 10 digits). spaCy saves ``cfg`` with the pipeline,
so ``spacy.load``, resumed training (a sourced component is not
initialized again) and ``spacy package`` bind the same numbers without
counting again.
"""

from typing import List

from wasabi import msg

from .class_weights import balanced_from_counts
from .spacy_components_base import CFG_WEIGHTS, is_balanced, leaves


def balanced_paths(pipe) -> List[str]:
    """The paths of the parts of ``pipe``'s configured loss with ``class_weights = "balanced"``."""
    return [path for path, leaf in leaves(pipe.configured_loss) if is_balanced(leaf)]


def count_and_store(pipe, get_examples) -> None:
    """Count ``pipe``'s classes over ``get_examples()`` and store the balanced weights in ``pipe.cfg``."""
    pipe.cfg.pop(CFG_WEIGHTS, None)
    paths = balanced_paths(pipe)
    if not paths:
        return
    counts, what = pipe._class_counts(get_examples)
    names = pipe._loss_names()
    classes = list(names) if names else list(range(len(pipe.labels)))
    weights = balanced_from_counts(counts, classes)
    # as repr strings: spaCy's JSON writer rounds floats to 10 digits
    stored = {c: repr(weights[c]) for c in classes} if names else [repr(weights[c]) for c in classes]
    pipe.cfg[CFG_WEIGHTS] = {path: stored for path in paths}
    print_table(pipe, classes, counts, weights, what)


def print_table(pipe, classes, counts, weights, what: str) -> None:
    total = sum(counts.get(c, 0) for c in classes)
    msg.info(
        f"Class weights of '{pipe.name}' (class_weights = \"balanced\": n / (n_classes * n_c), "
        f"counted over {total} {what}; unseen labels weigh 1.0)"
    )
    label_of = getattr(pipe, "_class_display", None) or str
    rows = [(label_of(c), counts.get(c, 0), f"{weights[c]:.6g}") for c in classes]
    msg.table(rows, header=("label", "count", "weight"), divider=True, aligns=("l", "r", "r"))


def stored_weights(value):
    """The weights stored in ``cfg`` (a dict or a list of float reprs) as floats."""
    if isinstance(value, dict):
        return {label: float(w) for label, w in value.items()}
    return [float(w) for w in value]
