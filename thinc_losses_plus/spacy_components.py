"""spaCy doc and token classifiers whose loss is a config block.

Five of the factories registered through the ``spacy_factories`` entry
points of ``setup.cfg`` (spaCy imports this module when it loads them;
importing ``thinc_losses_plus`` alone never imports spaCy); the span
components are in :mod:`.spacy_spans`, the lemmatizer and the entity linker
in :mod:`.spacy_lemmatizer_linker`:

=================================  =====================  =====================================
factory                            extends                default ``loss`` (= spaCy's gradient)
=================================  =====================  =====================================
``textcat_with_loss``              ``textcat``            ``CategoricalCrossentropy.v4``, normalize = false
``textcat_multilabel_with_loss``   ``textcat_multilabel`` ``L2Distance.v2``, normalize = false
``tagger_with_loss``               ``tagger``             ``SequenceCategoricalCrossentropy.v4``, normalize = false
``senter_with_loss``               ``senter``             ``SequenceCategoricalCrossentropy.v4``, normalize = false
``morphologizer_with_loss``        ``morphologizer``      ``SequenceCategoricalCrossentropy.v4``, normalize = false
=================================  =====================  =====================================

Each takes every setting of the component it extends plus ``loss``; the
component gives the loss its labels (``names``), so a config never repeats
them. The tagger's ``neg_prefix`` and ``label_smoothing`` (and the
morphologizer's ``label_smoothing``) are passed on to the loss when the loss
block leaves them at their defaults; when both set them, the loss block wins
and a one-line warning names the key to delete from the component's block.
The text classifiers report a loss with ``normalize = false`` per document
(spaCy's #9904); the gradient is the loss's own. The token classifiers hand
their labels, negative ones (the tagger's ``"!NN"``) included, to the
sequence cross-entropy and to every loss that takes labels
(``takes_labels``: the sparse cross-entropy, focal loss, the generalized
cross-entropy, MultiMargin); any other loss gets one-hot rows and refuses
negative labels.

Whatever the model's output layer, the gradient handed to it is the
correct one for the configured loss (see :mod:`thinc_losses_plus.output_layers`);
a loss that cannot be paired with the output layer is refused by
``initialize`` (and at the first update of a pipeline loaded from disk).

Two differences from the built-ins, both deliberate: an exclusive ``textcat``
document with no positive label is masked (spaCy pushes all its scores
down), and ``textcat`` models whose output layer is ``softmax_activation``
(``TextCatBOW``) get the true gradient of the default cross-entropy, where
spaCy hands ``scores - truths`` to the layer; ``L2Distance.v2`` with
``normalize = false`` reproduces spaCy's gradient there exactly.

Note: when the loss block names the same ``@losses`` as the factory's
default, spaCy merges it with the default block, so ``normalize = false``
carries over unless the block sets it.
"""

from collections import Counter
from typing import Callable, List, Optional

import numpy
from spacy.language import Language
from spacy.morphology import Morphology
from spacy.pipeline import (
    Morphologizer,
    MultiLabel_TextCategorizer,
    SentenceRecognizer,
    Tagger,
    TextCategorizer,
)
from spacy.tokens import Doc
from thinc.api import Model
from thinc.loss import Loss
from thinc.types import Floats2d

from .class_weights import count_labels
from .output_layers import is_softmax_family
from .spacy_components_base import (
    LABELS,
    SEQUENCE,
    _factory,
    _WithLoss,
    call_loss,
    forward_settings,
    truth_format,
)

# What the doc and token classifiers share ---------------------------------------


class _TextcatLoss(_WithLoss):
    """Text classifiers: dense truth rows (spaCy's), or one label per doc for sparse losses.

    The reported loss is per document (spaCy's #9904): a loss with
    ``normalize = false`` has its reported value divided by the number of
    documents; the gradient is the loss's own.
    """

    report_per_example = True

    def _format_problem(self, loss) -> Optional[str]:
        if truth_format(loss, rows=True) == SEQUENCE:
            return "it scores token sequences; use SparseCategoricalCrossentropy.v4 or CategoricalCrossentropy.v4"
        return None

    def _loss_and_grad(self, loss, examples, scores):
        # The truths and masks are built and checked on the host: no device round trip per check.
        truths, known = self._truth_rows(examples)
        if truth_format(loss, rows=True) == LABELS:
            return call_loss(loss, scores, self._labels_of(truths, known), None, self.name)
        weight = known
        if is_softmax_family(loss):
            # A doc with no positive label has no target distribution: mask it.
            empty = truths.sum(axis=1) == 0
            if empty.any():
                truths = numpy.where(empty[:, None], numpy.float32(1.0 / truths.shape[1]), truths)
                keep = (~empty[:, None]).astype(truths.dtype)
                weight = keep if weight is None else weight * keep
        ops = self.model.ops
        return call_loss(loss, scores, ops.asarray(truths), None if weight is None else ops.asarray(weight), self.name)

    def _truth_rows(self, examples):
        """spaCy's truth rows (``_examples_to_truth``), and which entries are annotated (None: all),
        as host arrays. Each doc's ``cats`` is read once (spaCy reads it once per label)."""
        labels = self.labels
        cats = [eg.reference.cats for eg in examples]
        shape = (len(cats), len(labels))
        truths = numpy.array([c.get(label, 0.0) for c in cats for label in labels], dtype="f").reshape(shape)
        known = None
        if self.support_missing_values:
            known = numpy.array([label in c for c in cats for label in labels], dtype="f").reshape(shape)
            if known.all():
                known = None
        return truths, known

    def _class_counts(self, get_examples):
        """Documents per label: a document counts for each category it is annotated positive for."""
        counts: Counter = Counter()
        labels = set(self.labels)
        for eg in get_examples():
            counts.update(label for label, value in eg.reference.cats.items() if value == 1.0 and label in labels)
        return counts, "documents"

    def _labels_of(self, truths, known) -> List[Optional[str]]:
        """One label per doc (None: no positive label) from host truth rows."""
        annotated = numpy.ones(truths.shape, dtype=bool) if known is None else known > 0
        hot = (truths == 1.0) & annotated
        soft = (truths != 0.0) & ~hot & annotated
        if soft.any():
            i, j = (int(k[0]) for k in numpy.nonzero(soft))
            raise ValueError(
                f"Cannot calculate the loss of '{self.name}': a doc's label {self.labels[j]!r} is "
                f"{float(truths[i, j])!r}, but the loss takes one label per doc (values 0 and 1); "
                "use CategoricalCrossentropy.v4 for target distributions"
            )
        n_hot = hot.sum(axis=1)
        if (n_hot > 1).any():
            i = int(numpy.flatnonzero(n_hot > 1)[0])
            several = [self.labels[j] for j in numpy.flatnonzero(hot[i]).tolist()]
            raise ValueError(
                f"Cannot calculate the loss of '{self.name}': a doc has several positive labels {several}, "
                "but the loss takes one label per doc; use BinaryCrossentropy.v1"
            )
        labels = self.labels
        return [labels[j] if h else None for j, h in zip(hot.argmax(axis=1).tolist(), n_hot.tolist())]


class _TokenLoss(_WithLoss):
    """Tagger, senter, morphologizer: one label (str, or None if missing) per token."""

    def _token_truths(self, examples) -> List[List[Optional[str]]]:
        raise NotImplementedError

    def _class_counts(self, get_examples):
        """Tokens per label (missing and negative labels are not counted)."""
        counts: Counter = Counter()
        for eg in get_examples():
            counts.update(count_labels(self._token_truths([eg])))
        return counts, "tokens"

    def _columns(self) -> dict:
        """Label -> column of the scores."""
        return {name: i for i, name in enumerate(self.labels)}

    def _truths_for_loss(self, loss, truths):
        """The truths as ``loss`` takes them (the lemmatizer marks missing tokens with ``missing_value``)."""
        return truths

    def _loss_and_grad(self, loss, examples, scores):
        truths = self._token_truths(examples)
        fmt = truth_format(loss)
        if fmt in (SEQUENCE, LABELS):
            truths = self._truths_for_loss(loss, truths)
        if not scores and fmt != SEQUENCE:
            return [], 0.0
        if fmt == SEQUENCE and getattr(loss, "sparse", True):
            return call_loss(loss, scores, truths, None, self.name)
        if fmt == SEQUENCE:  # dense targets per sequence
            dense = [self._one_hot(loss, t, s) for t, s in zip(truths, scores)]
            weights = [w for _, w in dense]
            weights = (
                None if all(w is None for w in weights) else [self._ones_if_none(w, s) for w, s in zip(weights, scores)]
            )
            return call_loss(loss, scores, [d for d, _ in dense], weights, self.name)
        ops = self.model.ops
        lengths = [len(t) for t in truths]
        flat_scores = ops.xp.concatenate(scores) if len(scores) != 1 else scores[0]
        flat_truths = [label for doc_truths in truths for label in doc_truths]
        if fmt == LABELS:
            grad, value = call_loss(loss, flat_scores, flat_truths, None, self.name)
        else:
            target, weight = self._one_hot(loss, flat_truths, flat_scores)
            grad, value = call_loss(loss, flat_scores, target, weight, self.name)
        return _split(grad, lengths), value

    def _one_hot(self, loss, labels, scores):
        """Dense one-hot rows for ``labels``; rows without a label get weight 0."""
        xp = self.model.ops.xp
        n, n_classes = scores.shape
        index = self._columns()
        target = xp.zeros((n, n_classes), dtype=scores.dtype)
        rows, cols, missing = [], [], []
        for i, label in enumerate(labels):
            if label is None:
                missing.append(i)
            elif label in index:
                rows.append(i)
                cols.append(index[label])
            else:
                raise ValueError(
                    f"Cannot calculate the loss of '{self.name}': the label {label!r} is not one of its labels "
                    f"(negative labels need a loss that takes labels, such as SequenceCategoricalCrossentropy.v4 or "
                    "CategoricalFocalCrossentropy.v1)"
                )
        if rows:
            target[xp.asarray(rows), xp.asarray(cols)] = 1.0
        if not missing:
            return target, None
        weight = xp.ones((n, 1), dtype=scores.dtype)
        weight[xp.asarray(missing)] = 0.0
        if is_softmax_family(loss):  # a masked row still needs a valid distribution
            target[xp.asarray(missing)] = 1.0 / n_classes
        return target, weight

    def _ones_if_none(self, weight, scores):
        return self.model.ops.xp.ones((scores.shape[0], 1), dtype=scores.dtype) if weight is None else weight


def _split(grad, lengths):
    out, start = [], 0
    for length in lengths:
        out.append(grad[start : start + length])
        start += length
    return out


# Doc classification ----------------------------------------------------------


class TextCategorizerWithLoss(_TextcatLoss, TextCategorizer):
    """spaCy's ``textcat`` (exclusive classes) with a configurable loss."""

    factory_name = "textcat_with_loss"

    def __init__(self, vocab, model, name="textcat", *, threshold: float, scorer=None, loss: Loss):
        super().__init__(vocab, model, name, threshold=threshold, scorer=scorer)
        self._init_loss(loss)

    def initialize(self, get_examples, *, nlp=None, labels=None, positive_label=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels, positive_label=positive_label)
        self._initialize_loss(get_examples)


class MultiLabelTextCategorizerWithLoss(_TextcatLoss, MultiLabel_TextCategorizer):
    """spaCy's ``textcat_multilabel`` with a configurable loss."""

    factory_name = "textcat_multilabel_with_loss"

    def __init__(self, vocab, model, name="textcat_multilabel", *, threshold: float, scorer=None, loss: Loss):
        super().__init__(vocab, model, name, threshold=threshold, scorer=scorer)
        self._init_loss(loss)

    def initialize(self, get_examples, *, nlp=None, labels=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._initialize_loss(get_examples)


# Token classification --------------------------------------------------------


class TaggerWithLoss(_TokenLoss, Tagger):
    """spaCy's ``tagger`` with a configurable loss."""

    factory_name = "tagger_with_loss"

    def __init__(
        self,
        vocab,
        model,
        name="tagger",
        *,
        overwrite=False,
        scorer=None,
        neg_prefix="!",
        label_smoothing=0.0,
        loss: Loss
    ):
        super().__init__(
            vocab,
            model,
            name,
            overwrite=overwrite,
            scorer=scorer,
            neg_prefix=neg_prefix,
            label_smoothing=label_smoothing,
        )
        settings = {"neg_prefix": (neg_prefix, "!"), "label_smoothing": (label_smoothing, 0.0)}
        self._init_loss(forward_settings(loss, self.factory_name, settings, name))

    def initialize(self, get_examples, *, nlp=None, labels=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._initialize_loss(get_examples)

    def _token_truths(self, examples):
        # As spaCy's Tagger: an empty tag "" (unannotated or misaligned) is missing.
        return [[tag if tag != "" else None for tag in eg.get_aligned("TAG", as_string=True)] for eg in examples]


class SentenceRecognizerWithLoss(_TokenLoss, SentenceRecognizer):
    """spaCy's ``senter`` with a configurable loss (labels "I" and "S")."""

    factory_name = "senter_with_loss"

    def __init__(self, vocab, model, name="senter", *, overwrite=False, scorer=None, loss: Loss):
        super().__init__(vocab, model, name, overwrite=overwrite, scorer=scorer)
        self._init_loss(loss)

    def initialize(self, get_examples, *, nlp=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp)
        self._initialize_loss(get_examples)

    def _token_truths(self, examples):
        inside, start = self.labels
        truths = []
        for eg in examples:
            truths.append([None if x is None else start if x == 1 else inside for x in eg.get_aligned("SENT_START")])
        return truths


class MorphologizerWithLoss(_TokenLoss, Morphologizer):
    """spaCy's ``morphologizer`` with a configurable loss."""

    factory_name = "morphologizer_with_loss"

    def __init__(
        self,
        vocab,
        model,
        name="morphologizer",
        *,
        overwrite=True,
        extend=False,
        label_smoothing=0.0,
        scorer=None,
        loss: Loss
    ):
        super().__init__(
            vocab, model, name, overwrite=overwrite, extend=extend, label_smoothing=label_smoothing, scorer=scorer
        )
        settings = {"label_smoothing": (label_smoothing, 0.0)}
        self._init_loss(forward_settings(loss, self.factory_name, settings, name))

    def initialize(self, get_examples, *, nlp=None, labels=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._initialize_loss(get_examples)

    def _token_truths(self, examples):
        # As spaCy's Morphologizer: the label is the POS and the features combined;
        # misaligned, unannotated or unknown combinations are missing.
        truths = []
        labels = set(self.labels)
        for eg in examples:
            eg_truths = []
            pos_tags = eg.get_aligned("POS", as_string=True)
            morphs = eg.get_aligned("MORPH", as_string=True)
            for pos, morph in zip(pos_tags, morphs):
                if pos is None or morph is None or (pos == "" and morph == ""):
                    label = None
                else:
                    label_dict = Morphology.feats_to_dict(morph)
                    if pos:
                        label_dict[self.POS_FEAT] = pos
                    label = self.vocab.strings[self.vocab.morphology.add(label_dict)]
                    if label not in labels:
                        label = None
                eg_truths.append(label)
            truths.append(eg_truths)
        return truths


# Factories -----------------------------------------------------------------------

@_factory("textcat_with_loss", "textcat")
def make_textcat_with_loss(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    threshold: float,
    scorer: Optional[Callable],
    loss: Loss,
) -> TextCategorizerWithLoss:
    return TextCategorizerWithLoss(nlp.vocab, model, name, threshold=threshold, scorer=scorer, loss=loss)


@_factory("textcat_multilabel_with_loss", "textcat_multilabel")
def make_textcat_multilabel_with_loss(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    threshold: float,
    scorer: Optional[Callable],
    loss: Loss,
) -> MultiLabelTextCategorizerWithLoss:
    return MultiLabelTextCategorizerWithLoss(nlp.vocab, model, name, threshold=threshold, scorer=scorer, loss=loss)


@_factory("tagger_with_loss", "tagger")
def make_tagger_with_loss(
    nlp: Language,
    name: str,
    model: Model,
    overwrite: bool,
    scorer: Optional[Callable],
    neg_prefix: str,
    label_smoothing: float,
    loss: Loss,
) -> TaggerWithLoss:
    return TaggerWithLoss(
        nlp.vocab,
        model,
        name,
        overwrite=overwrite,
        scorer=scorer,
        neg_prefix=neg_prefix,
        label_smoothing=label_smoothing,
        loss=loss,
    )


@_factory("senter_with_loss", "senter")
def make_senter_with_loss(
    nlp: Language, name: str, model: Model, overwrite: bool, scorer: Optional[Callable], loss: Loss
) -> SentenceRecognizerWithLoss:
    return SentenceRecognizerWithLoss(nlp.vocab, model, name, overwrite=overwrite, scorer=scorer, loss=loss)


@_factory("morphologizer_with_loss", "morphologizer")
def make_morphologizer_with_loss(
    nlp: Language,
    model: Model,
    name: str,
    overwrite: bool,
    extend: bool,
    label_smoothing: float,
    scorer: Optional[Callable],
    loss: Loss,
) -> MorphologizerWithLoss:
    return MorphologizerWithLoss(
        nlp.vocab,
        model,
        name,
        overwrite=overwrite,
        extend=extend,
        label_smoothing=label_smoothing,
        scorer=scorer,
        loss=loss,
    )
