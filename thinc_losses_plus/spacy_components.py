"""spaCy components whose loss is a config block.

Five factories, registered through the ``spacy_factories`` entry points of
``setup.cfg`` (spaCy imports this module when it loads them; importing
``thinc_losses_plus`` alone never imports spaCy):

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
block leaves them at their defaults; setting both differently is refused.

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

from typing import Callable, List, Optional

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

from .spacy_components_base import _TextcatLoss, _TokenLoss, forward_settings

try:  # spaCy >= 3.8.5 registers its built-in factories on demand
    from spacy.pipeline.factories import register_factories
except ImportError:  # older 3.8: registered when spacy.pipeline is imported
    pass
else:
    register_factories()


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
        self._bound_loss()


class MultiLabelTextCategorizerWithLoss(_TextcatLoss, MultiLabel_TextCategorizer):
    """spaCy's ``textcat_multilabel`` with a configurable loss."""

    factory_name = "textcat_multilabel_with_loss"

    def __init__(self, vocab, model, name="textcat_multilabel", *, threshold: float, scorer=None, loss: Loss):
        super().__init__(vocab, model, name, threshold=threshold, scorer=scorer)
        self._init_loss(loss)

    def initialize(self, get_examples, *, nlp=None, labels=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._bound_loss()


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
        self._init_loss(forward_settings(loss, self.factory_name, settings))

    def initialize(self, get_examples, *, nlp=None, labels=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._bound_loss()

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
        self._bound_loss()

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
        self._init_loss(forward_settings(loss, self.factory_name, {"label_smoothing": (label_smoothing, 0.0)}))

    def initialize(self, get_examples, *, nlp=None, labels=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._bound_loss()

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

DEFAULT_LOSSES = {
    "textcat": {"@losses": "CategoricalCrossentropy.v4", "normalize": False},
    "textcat_multilabel": {"@losses": "L2Distance.v2", "normalize": False},
    "tagger": {"@losses": "SequenceCategoricalCrossentropy.v4", "normalize": False},
    "senter": {"@losses": "SequenceCategoricalCrossentropy.v4", "normalize": False},
    "morphologizer": {"@losses": "SequenceCategoricalCrossentropy.v4", "normalize": False},
}


def _factory(name: str, extends: str):
    """Register the decorated function as ``name``: the built-in ``extends``'s
    defaults, analysis and score weights, plus a ``loss`` block."""
    meta = Language.get_factory_meta(extends)
    return Language.factory(
        name,
        default_config={**meta.default_config, "loss": DEFAULT_LOSSES[extends]},
        assigns=meta.assigns,
        requires=meta.requires,
        retokenizes=meta.retokenizes,
        default_score_weights=meta.default_score_weights,
    )


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
