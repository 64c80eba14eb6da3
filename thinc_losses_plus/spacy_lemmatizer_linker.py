"""The trainable lemmatizer and the entity linker with a configurable loss.

==================================  ========================  =====================================
factory                             extends                   default ``loss`` (= spaCy's gradient)
==================================  ========================  =====================================
``trainable_lemmatizer_with_loss``  ``trainable_lemmatizer``  ``SequenceCategoricalCrossentropy.v4``, normalize = false, missing_value = -1
``entity_linker_with_loss``         ``entity_linker``         Thinc's ``CosineDistance.v1``, normalize = false
==================================  ========================  =====================================

The lemmatizer's classes are edit trees: its truths are column indices (one
per token), a token without a gold lemma is missing (it reaches the loss as
the loss's integer ``missing_value``, ``-1`` by default as in spaCy, or
``None``), and a token whose edit tree was pruned by ``min_tree_freq`` is
column 0, as spaCy has it. Its ``class_weights`` are a list indexed by
column (or ``"balanced"``); it has no label names.

The entity linker compares the sentence encoding of each gold entity that
has a knowledge-base ID with that entity's KB vector; encodings of other
entities get a zero gradient. Its reported loss is divided by the number of
compared entities when the loss does not normalise itself, as spaCy's.
"""

from typing import Callable, Iterable, List, Optional

from spacy.kb import Candidate, KnowledgeBase
from spacy.language import Language
from spacy.pipeline import EditTreeLemmatizer, EntityLinker
from spacy.tokens import Span
from spacy.training import validate_examples
from spacy.vocab import Vocab
from thinc.api import Model
from thinc.loss import Loss

from .output_layers import is_softmax_family
from .spacy_components import _TokenLoss
from .spacy_components_base import DENSE, _factory, _setting, _WithLoss, call_loss, truth_format


class EditTreeLemmatizerWithLoss(_TokenLoss, EditTreeLemmatizer):
    """spaCy's ``trainable_lemmatizer`` with a configurable loss (classes: edit trees)."""

    factory_name = "trainable_lemmatizer_with_loss"

    def __init__(self, vocab, model, name="trainable_lemmatizer", *, loss: Loss, **settings):
        super().__init__(vocab, model, name, **settings)
        self._init_loss(loss)

    def _loss_names(self) -> None:
        return None  # edit-tree ids are not names: truths are column indices

    def _columns(self):
        return {i: i for i in range(len(self.labels))}

    def _class_display(self, column: int) -> str:
        return f"{column}: {self.trees.tree_to_str(self.labels[column])}"

    def initialize(self, get_examples, *, nlp=None, labels=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._initialize_loss(get_examples)

    def _token_truths(self, examples) -> List[List[Optional[int]]]:
        # As spaCy's EditTreeLemmatizer.get_loss (including its additions to self.trees).
        truths = []
        for eg in examples:
            eg_truths = []
            for predicted, gold_lemma in zip(eg.predicted, eg.get_aligned("LEMMA", as_string=True)):
                if gold_lemma is None or gold_lemma == "":
                    eg_truths.append(None)
                else:
                    eg_truths.append(self.tree2label.get(self.trees.add(predicted.text, gold_lemma), 0))
            truths.append(eg_truths)
        return truths

    def _truths_for_loss(self, loss, truths):
        marker = _setting(loss, "missing_value")
        if isinstance(marker, bool) or not isinstance(marker, int):
            return truths
        return [[marker if t is None else t for t in doc] for doc in truths]


class EntityLinkerWithLoss(_WithLoss, EntityLinker):
    """spaCy's ``entity_linker`` with a configurable loss (sentence encodings vs KB vectors)."""

    factory_name = "entity_linker_with_loss"
    report_per_example = True

    def __init__(self, vocab, model, name="entity_linker", *, loss: Loss, **settings):
        super().__init__(vocab, model, name, **settings)
        self._init_loss(loss)

    def _loss_names(self) -> None:
        return None

    def _rebind_after_loading(self):
        self._bind_loss()

    def _format_problem(self, loss) -> Optional[str]:
        if is_softmax_family(loss) or truth_format(loss, rows=True) != DENSE:
            return (
                "it compares sentence encodings with knowledge-base vectors; use a loss between vectors, "
                "such as CosineDistance.v2 or L2Distance.v2"
            )
        return None

    def initialize(self, get_examples, *, nlp=None, kb_loader=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, kb_loader=kb_loader)
        self._initialize_loss(get_examples)

    def get_loss(self, examples, sentence_encodings):
        validate_examples(examples, "EntityLinker.get_loss")
        entity_encodings, keep_ents, eidx = [], [], 0
        for eg in examples:  # as spaCy's EntityLinker.get_loss
            kb_ids = eg.get_aligned("ENT_KB_ID", as_string=True)
            for ent in eg.get_matching_ents():
                kb_id = kb_ids[ent.start]
                if kb_id:
                    entity_encodings.append(self.kb.get_vector(kb_id))
                    keep_ents.append(eidx)
                eidx += 1
        ops = self.model.ops
        if not keep_ents:
            return 0, ops.alloc2f(*sentence_encodings.shape)
        entity_encodings = ops.asarray2f(entity_encodings, dtype="float32")
        selected = sentence_encodings[keep_ents]
        if selected.shape != entity_encodings.shape:
            raise RuntimeError(f"Cannot calculate the loss of '{self.name}': gold entities do not match up")

        def loss_and_grad(loss):
            grad, value = call_loss(loss, selected, entity_encodings, None, self.name)
            out = ops.alloc2f(*sentence_encodings.shape)
            out[keep_ents] = grad
            return out, value

        return self._sum_parts(sentence_encodings, loss_and_grad, n=len(keep_ents))


@_factory("trainable_lemmatizer_with_loss", "trainable_lemmatizer")
def make_trainable_lemmatizer_with_loss(
    nlp: Language,
    name: str,
    model: Model,
    backoff: Optional[str],
    min_tree_freq: int,
    overwrite: bool,
    top_k: int,
    scorer: Optional[Callable],
    loss: Loss,
) -> EditTreeLemmatizerWithLoss:
    return EditTreeLemmatizerWithLoss(
        nlp.vocab,
        model,
        name,
        backoff=backoff,
        min_tree_freq=min_tree_freq,
        overwrite=overwrite,
        top_k=top_k,
        scorer=scorer,
        loss=loss,
    )


@_factory("entity_linker_with_loss", "entity_linker")
def make_entity_linker_with_loss(
    nlp: Language,
    name: str,
    model: Model,
    *,
    labels_discard: Iterable[str],
    n_sents: int,
    incl_prior: bool,
    incl_context: bool,
    entity_vector_length: int,
    get_candidates: Callable[[KnowledgeBase, Span], Iterable[Candidate]],
    get_candidates_batch: Callable[[KnowledgeBase, Iterable[Span]], Iterable[Iterable[Candidate]]],
    generate_empty_kb: Callable[[Vocab, int], KnowledgeBase],
    overwrite: bool,
    scorer: Optional[Callable],
    use_gold_ents: bool,
    candidates_batch_size: int,
    threshold: Optional[float] = None,
    loss: Loss,
) -> EntityLinkerWithLoss:
    if not model.attrs.get("include_span_maker", False):
        raise ValueError(
            f"Cannot create '{name}' (entity_linker_with_loss): its model is a spacy.EntityLinker.v1 "
            "architecture, which only spaCy's legacy EntityLinker_v1 runs; use spacy.EntityLinker.v2"
        )
    return EntityLinkerWithLoss(
        nlp.vocab,
        model,
        name,
        labels_discard=labels_discard,
        n_sents=n_sents,
        incl_prior=incl_prior,
        incl_context=incl_context,
        entity_vector_length=entity_vector_length,
        get_candidates=get_candidates,
        get_candidates_batch=get_candidates_batch,
        generate_empty_kb=generate_empty_kb,
        overwrite=overwrite,
        scorer=scorer,
        use_gold_ents=use_gold_ents,
        candidates_batch_size=candidates_batch_size,
        threshold=threshold,
        loss=loss,
    )
