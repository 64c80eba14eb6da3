"""spaCy's transition-based components whose loss is a config block: ``ner_with_loss``, ``parser_with_loss``.

=====================  ==========  ==================================================
factory                extends     default ``loss`` (= spaCy's gradient, bit for bit)
=====================  ==========  ==================================================
``ner_with_loss``      ``ner``     ``PartialLabelCrossentropy.v1``, normalize = false
``parser_with_loss``   ``parser``  ``PartialLabelCrossentropy.v1``, normalize = false
=====================  ==========  ==================================================

Each takes every setting of the component it extends plus ``loss``. The
loss is over the actions of the transition system: at each parser state
every zero-cost valid action is a correct answer, as in spaCy's own loss
(``cpu_log_loss``), so the loss must be a
:class:`~thinc_losses_plus.PartialLabelCrossentropy` (focal ``gamma``,
``class_weights``).

How the correct actions are found. ``Parser.update`` calls
``self.get_batch_loss(states, golds, scores, losses)`` through attribute
lookup; this override first runs spaCy's own ``get_batch_loss`` (compiled:
it computes the costs of every action and the default gradient ``d``),
then reads the acceptable actions off its sign pattern: ``d <= 0`` exactly
on the actions spaCy treats as correct (``d = p - q`` there, ``q >= p``),
``d = p > 0`` on the others. The only ambiguity is a wrong action whose
probability underflows float32 (a score more than ~100 below the row's
best): rows with such an entry are recomputed exactly with the transition
system's Python ``get_cost``. Measured on the shipped corpus, calling
``get_cost`` for every action makes the loss ~40 times slower than the
compiled route (see docs/spacy.md); both give the same sets.

Class weights are keyed by label: the entity label of an NER action (``B-``,
``I-``, ``L-``, ``U-`` of one type share it), ``O`` for NER's outside actions
(``O`` and the internal ``U-``), the dependency label of a parser arc
(``L-`` and ``R-`` share it), ``S`` and ``D`` for shift and reduce, and the
missing label ``-`` for states whose correct actions span several labels
(an unannotated token). ``class_weights = "balanced"`` counts, in
``initialize``, the labels of the gold actions: for NER the gold BILUO tag
of every annotated token (one action per token; unannotated tokens count
as ``-``), for the parser the actions of the static oracle
(``moves.get_oracle_sequence``). The counted table is printed and stored in
the component's ``cfg`` (``to_disk``/``spacy.load``/resumed training and
``spacy package`` read the counts back and derive the same weights; nothing
is recounted). After
``initialize``, ``pipe.loss`` is the loss that runs: action names, labels
and counted weights bound.

The reported loss (``losses[name]``) is the calculator's loss (the
cross-entropy), where spaCy reports ``sum(d ** 2)``; the gradient, and so
the trained model, is the same. Beam training (``beam_ner``,
``beam_parser``) is not extended: its loss is computed over whole beams
inside compiled code, with no per-state gradient to replace.
"""
from collections import Counter
from typing import Callable, Dict, List, Optional

import numpy
from spacy.language import Language
from spacy.pipeline import DependencyParser, EntityRecognizer
from spacy.pipeline._parser_internals.transition_system import TransitionSystem
from thinc.api import Model
from thinc.loss import Loss

from .class_weights import balanced_from_counts
from .labels import BALANCED
from .transition import PartialLabelCrossentropy

try:  # spaCy >= 3.8.5 registers its built-in factories on demand
    from spacy.pipeline.factories import register_factories
except ImportError:  # older 3.8: registered when spacy.pipeline is imported
    pass
else:
    register_factories()

#: Where the counted ``"balanced"`` weights live in the component's ``cfg``.
CFG_KEY = "loss_class_weights"
#: A wrong action whose score is this far below its row's best may underflow
#: to probability 0 in float32 (exp(-103) < 2**-149): its sign is ambiguous.
UNDERFLOW_GAP = 100.0


class _TransitionLoss:
    """What ``ner_with_loss`` and ``parser_with_loss`` share."""

    factory_name = ""
    missing_label = "-"

    def _init_loss(self, loss: Loss) -> None:
        if not isinstance(loss, PartialLabelCrossentropy):
            kind = getattr(loss, "name", None) or type(loss).__name__
            raise ValueError(
                f"Cannot create '{self.factory_name}': its loss must be PartialLabelCrossentropy.v1 (a set of correct "
                f"actions per parser state), got {kind}"
            )
        if self.cfg.get("beam_width", 1) > 1:
            raise ValueError(
                f"Cannot create '{self.factory_name}': beam training (beam_width > 1) computes its loss over whole "
                "beams in compiled code and cannot take a configured loss; use beam_width = 1"
            )
        self._configured_loss = loss
        self._bound = None

    @property
    def loss(self) -> PartialLabelCrossentropy:
        """The loss that runs: action names, labels and counted weights bound once the actions are known."""
        if self.moves.n_moves == 0:
            return self._configured_loss
        return self._bound_loss()

    # Labels ---------------------------------------------------------------------

    def action_label(self, action: str) -> str:
        raise NotImplementedError

    def _bound_loss(self) -> PartialLabelCrossentropy:
        n_moves = self.moves.n_moves  # actions are only ever added: their count says when to rebind
        stored = self.cfg.get(CFG_KEY)
        key = (n_moves, None if stored is None else (tuple(stored["labels"]), tuple(stored["counts"].items())))
        if self._bound is None or self._bound[0] != key:
            names = tuple(self.moves.get_class_name(i) for i in range(n_moves))
            loss = self._configured_loss
            if loss.class_weights == BALANCED:
                if stored is None:
                    raise ValueError(
                        f"Cannot use class_weights = 'balanced' in '{self.name}': the weights are counted in "
                        "initialize, which has not run (nor were counted weights loaded with the pipeline)"
                    )
                # From the stored counts (JSON keeps ints exactly, not every float digit).
                loss = loss.with_class_weights(balanced_from_counts(stored["counts"], stored["labels"]))
            try:
                loss = loss.with_columns(list(names), [self.action_label(n) for n in names])
            except ValueError as err:
                raise ValueError(f"Cannot use {loss.name} as the loss of '{self.name}': {err}") from None
            self._bound = (key, loss)
        return self._bound[1]

    # Training ------------------------------------------------------------------------

    def _count_and_store(self, get_examples) -> None:
        if self._configured_loss.class_weights != BALANCED:
            self.cfg.pop(CFG_KEY, None)
            return
        counts = self.count_gold_labels(get_examples())
        labels = list(dict.fromkeys(self.action_label(self.moves.get_class_name(i)) for i in range(self.moves.n_moves)))
        if counts.get(self.missing_label):
            labels.append(self.missing_label)
        weights = balanced_from_counts(counts, labels)
        self.cfg[CFG_KEY] = {
            "counted": "gold actions' labels",
            "labels": labels,
            "counts": {label: int(counts.get(label, 0)) for label in labels},
            "weights": {label: round(weight, 6) for label, weight in weights.items()},  # for reading; bound from the counts
        }
        self._bound = None
        print_weight_table(self.name, labels, counts, weights)

    def count_gold_labels(self, examples) -> Counter:
        raise NotImplementedError

    def get_batch_loss(self, states, golds, scores, losses):
        """The configured loss's gradient w.r.t. the scores; its value is added to ``losses``."""
        d_scores = super().get_batch_loss(states, golds, scores, None)  # spaCy's own: costs, and the default gradient
        acceptable = d_scores <= 0
        zero = d_scores == 0
        if zero.any():
            suspect = zero & (scores < scores.max(axis=1, keepdims=True) - UNDERFLOW_GAP)
            if suspect.any():
                for i in numpy.flatnonzero(suspect.any(axis=1)).tolist():
                    acceptable[i] = self._acceptable_by_costs(states[i], golds[i])
        grad, value = self._bound_loss()(scores, acceptable)
        if losses is not None:
            losses.setdefault(self.name, 0.0)
            losses[self.name] += value
        return grad

    def _acceptable_by_costs(self, state, gold):
        """The actions spaCy's loss treats as correct, from the Python ``get_cost`` (exact, slow)."""
        return acceptable_actions(self.moves, state, gold)


def acceptable_actions(moves, state, gold):
    """spaCy's correct actions of one state: the valid actions of minimal cost (at most 1),
    as ``arg_max_if_gold`` in ``spacy/ml/parser_model.pyx`` selects them (invalid cost 9000)."""
    gold.update(state)
    costs = numpy.asarray([moves.get_cost(state, gold, i) for i in range(moves.n_moves)], dtype="float32")
    valid = costs < 9000
    best = min([1.0] + costs[valid].tolist())
    if not (valid & (costs <= best)).any():
        return numpy.zeros(costs.shape, dtype=bool)
    return costs <= best


def print_weight_table(name: str, labels: List[str], counts: Dict[str, int], weights: Dict[str, float]) -> None:
    """Print the counted weights as a table (label, count, weight)."""
    width = max([len("label")] + [len(label) for label in labels])
    print(f"Balanced class weights of '{name}' (counted from the training corpus: gold actions' labels)")
    print(f"{'label':<{width}}  {'count':>8}  {'weight':>10}")
    for label in labels:
        print(f"{label:<{width}}  {int(counts.get(label, 0)):>8}  {weights[label]:>10.4f}")


class EntityRecognizerWithLoss(_TransitionLoss, EntityRecognizer):
    """spaCy's ``ner`` with a configurable loss over its actions."""

    factory_name = "ner_with_loss"

    def __init__(
        self,
        vocab,
        model,
        name="ner",
        moves=None,
        *,
        update_with_oracle_cut_size=100,
        incorrect_spans_key=None,
        scorer=None,
        loss: Loss,
    ):
        kwargs = {} if scorer is None else {"scorer": scorer}
        super().__init__(
            vocab,
            model,
            name,
            moves,
            update_with_oracle_cut_size=update_with_oracle_cut_size,
            incorrect_spans_key=incorrect_spans_key,
            **kwargs,
        )
        self._init_loss(loss)

    def initialize(self, get_examples, nlp=None, labels=None):
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._count_and_store(get_examples)
        self._bound_loss()

    def action_label(self, action: str) -> str:
        _, _, label = action.partition("-")
        return label or "O"  # "O", and the internal "U-" that blocks entities

    def count_gold_labels(self, examples) -> Counter:
        counts: Counter = Counter()
        for eg in examples:
            if not self.moves.has_gold(eg):
                continue
            for tag in eg.get_aligned_ner():
                if tag is None or tag == "-" or tag == "":
                    counts[self.missing_label] += 1
                else:
                    counts[self.action_label(tag)] += 1
        return counts


class DependencyParserWithLoss(_TransitionLoss, DependencyParser):
    """spaCy's ``parser`` with a configurable loss over its actions."""

    factory_name = "parser_with_loss"

    def __init__(
        self,
        vocab,
        model,
        name="parser",
        moves=None,
        *,
        update_with_oracle_cut_size=100,
        min_action_freq=30,
        learn_tokens=False,
        scorer=None,
        loss: Loss,
    ):
        kwargs = {} if scorer is None else {"scorer": scorer}
        super().__init__(
            vocab,
            model,
            name,
            moves,
            update_with_oracle_cut_size=update_with_oracle_cut_size,
            min_action_freq=min_action_freq,
            learn_tokens=learn_tokens,
            **kwargs,
        )
        self._init_loss(loss)

    def initialize(self, get_examples, nlp=None, labels=None):
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._count_and_store(get_examples)
        self._bound_loss()

    def action_label(self, action: str) -> str:
        move, _, label = action.partition("-")
        return label or move  # "S" (shift), "D" (reduce)

    def count_gold_labels(self, examples) -> Counter:
        counts: Counter = Counter()
        for eg in examples:
            if not self.moves.has_gold(eg):
                continue
            for i in self.moves.get_oracle_sequence(eg):
                counts[self.action_label(self.moves.get_class_name(i))] += 1
        return counts


# Factories -----------------------------------------------------------------------

DEFAULT_LOSS = {"@losses": "PartialLabelCrossentropy.v1", "normalize": False}


def _factory(name: str, extends: str):
    """Register the decorated function as ``name``: the built-in ``extends``'s
    defaults, analysis and score weights, plus a ``loss`` block."""
    meta = Language.get_factory_meta(extends)
    return Language.factory(
        name,
        default_config={**meta.default_config, "loss": DEFAULT_LOSS},
        assigns=meta.assigns,
        requires=meta.requires,
        retokenizes=meta.retokenizes,
        default_score_weights=meta.default_score_weights,
    )


@_factory("ner_with_loss", "ner")
def make_ner_with_loss(
    nlp: Language,
    name: str,
    model: Model,
    moves: Optional[TransitionSystem],
    update_with_oracle_cut_size: int,
    incorrect_spans_key: Optional[str],
    scorer: Optional[Callable],
    loss: Loss,
) -> EntityRecognizerWithLoss:
    return EntityRecognizerWithLoss(
        nlp.vocab,
        model,
        name=name,
        moves=moves,
        update_with_oracle_cut_size=update_with_oracle_cut_size,
        incorrect_spans_key=incorrect_spans_key,
        scorer=scorer,
        loss=loss,
    )


@_factory("parser_with_loss", "parser")
def make_parser_with_loss(
    nlp: Language,
    name: str,
    model: Model,
    moves: Optional[TransitionSystem],
    update_with_oracle_cut_size: int,
    learn_tokens: bool,
    min_action_freq: int,
    scorer: Optional[Callable],
    loss: Loss,
) -> DependencyParserWithLoss:
    return DependencyParserWithLoss(
        nlp.vocab,
        model,
        name=name,
        moves=moves,
        update_with_oracle_cut_size=update_with_oracle_cut_size,
        learn_tokens=learn_tokens,
        min_action_freq=min_action_freq,
        scorer=scorer,
        loss=loss,
    )
