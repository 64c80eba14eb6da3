"""``ner_with_loss`` and ``parser_with_loss`` (SPEC section 5, issue 9).

* the default loss reproduces spaCy's ``ner`` and ``parser`` training bit for bit;
* the correct actions read off spaCy's gradient are the zero-cost actions
  of the Python ``get_cost`` (also where a probability underflows);
* class weights are keyed by entity / dependency label, ``"balanced"`` is
  counted in ``initialize``, printed, stored, and read back without a recount;
* the shipped ``configs/spacy/ner_balanced.cfg`` trains and loads back.
"""
import io
from contextlib import redirect_stdout
from pathlib import Path

import numpy
import pytest

spacy = pytest.importorskip("spacy")  # the Thinc-alone CI job has no spaCy

from numpy.testing import assert_allclose  # noqa: E402
from spacy.pipeline import DependencyParser, EntityRecognizer  # noqa: E402
from spacy.training import Example  # noqa: E402
from thinc.api import fix_random_seed  # noqa: E402

from thinc_losses_plus import PartialLabelCrossentropy  # noqa: E402
from thinc_losses_plus.entry_points import factory_entry_points  # noqa: E402
from thinc_losses_plus.spacy_transition import CFG_KEY, acceptable_actions  # noqa: E402

ROOT = Path(__file__).parent.parent
BUILTIN = {"ner_with_loss": "ner", "parser_with_loss": "parser"}

ENTS = [
    ("Maria went to Paris with Tom Smith today", [(0, 5, "PER"), (14, 19, "LOC"), (25, 34, "PER")]),
    ("Google hired Kenji in Tokyo", [(0, 6, "ORG"), (13, 18, "PER"), (22, 27, "LOC")]),
    ("nothing here at all", []),
]
DEPS = [
    ("I like green eggs", {"heads": [1, 1, 3, 1], "deps": ["nsubj", "ROOT", "amod", "dobj"]}),
    ("Eat blue ham", {"heads": [0, 2, 0], "deps": ["ROOT", "amod", "dobj"]}),
    ("She ate it quickly .", {"heads": [1, 1, 1, 1, 1], "deps": ["nsubj", "ROOT", "dobj", "advmod", "punct"]}),
]


def examples(nlp, base):
    if base == "ner":
        return [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in ENTS] * 4
    return [Example.from_dict(nlp.make_doc(t), a) for t, a in DEPS] * 4


def build(factory, loss=None, *, min_action_freq=1):
    base = BUILTIN.get(factory, factory)
    fix_random_seed(0)
    nlp = spacy.blank("en")
    config = {} if loss is None else {"loss": loss}
    if base == "parser":
        config["min_action_freq"] = min_action_freq
    component = nlp.add_pipe(factory, name=base, config=config)
    egs = examples(nlp, base)
    with redirect_stdout(io.StringIO()) as out:
        optimizer = nlp.initialize(lambda: egs)
    return nlp, component, egs, optimizer, out.getvalue()


def trained(factory, loss=None, steps=4):
    nlp, component, egs, optimizer, _ = build(factory, loss)
    history = []
    for _ in range(steps):
        losses = {}
        nlp.update(egs, sgd=optimizer, losses=losses)
        history.append(losses[component.name])
    return nlp, component, egs, history


def loss(**settings):
    return {"@losses": "PartialLabelCrossentropy.v1", "normalize": False, **settings}


def test_factories_are_spacy_factories_entry_points():
    names = set(factory_entry_points())
    assert set(BUILTIN) <= names


@pytest.mark.parametrize("factory", sorted(BUILTIN))
def test_factory_has_every_setting_of_the_builtin_plus_loss(factory):
    from spacy.language import Language

    ours = Language.get_factory_meta(factory).default_config
    theirs = Language.get_factory_meta(BUILTIN[factory]).default_config
    assert set(ours) == set(theirs) | {"loss"}
    assert {k: ours[k] for k in theirs} == theirs
    assert ours["loss"] == {"@losses": "PartialLabelCrossentropy.v1", "normalize": False}


@pytest.mark.parametrize("factory", sorted(BUILTIN))
def test_default_loss_trains_exactly_like_the_builtin(factory):
    _, builtin, _, _ = trained(BUILTIN[factory])
    _, ours, _, history = trained(factory)
    assert ours.model.to_bytes() == builtin.model.to_bytes()
    assert all(numpy.isfinite(history))


@pytest.mark.parametrize("factory", sorted(BUILTIN))
def test_pipe_loss_is_the_bound_loss(factory):
    _, component, _, _, _ = build(factory)
    bound = component.loss
    assert isinstance(bound, PartialLabelCrossentropy)
    names = [component.moves.get_class_name(i) for i in range(component.moves.n_moves)]
    assert bound.names == names
    if factory == "ner_with_loss":
        assert bound.column_labels[names.index("B-PER")] == "PER"
        assert bound.column_labels[names.index("O")] == "O"
    else:
        assert bound.column_labels[names.index("S")] == "S"
        assert bound.column_labels[names.index("L-nsubj")] == "nsubj"


def states_along_training(component, egs, n_steps=6):
    """(states, golds, scores) of a few transition steps, following the model."""
    states, golds, _ = component.moves.init_gold_batch(egs)
    model, _ = component.model.begin_update([eg.x for eg in egs])
    for _ in range(n_steps):
        if not states:
            return
        scores, _ = model.begin_update(states)
        yield states, golds, scores
        component.transition_states(states, scores)
        kept = [(s, g) for s, g in zip(states, golds) if not s.is_final()]
        states, golds = [s for s, _ in kept], [g for _, g in kept]


@pytest.mark.parametrize("factory", sorted(BUILTIN))
def test_sign_pattern_is_the_zero_cost_actions(factory):
    """spaCy's gradient is <= 0 exactly on the actions its loss treats as correct."""
    _, component, egs, _ = trained(factory, steps=2)
    base = EntityRecognizer if factory == "ner_with_loss" else DependencyParser
    checked = 0
    for states, golds, scores in states_along_training(component, egs):
        d = base.get_batch_loss(component, states, golds, scores, None)
        for i, (state, gold) in enumerate(zip(states, golds)):
            numpy.testing.assert_array_equal(acceptable_actions(component.moves, state, gold), d[i] <= 0)
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("factory", sorted(BUILTIN))
def test_underflowing_probabilities_fall_back_to_the_costs(factory):
    """A wrong action 200 below the best has probability 0 in float32: its zero
    gradient is ambiguous, and the exact costs decide."""
    _, component, egs, _, _ = build(factory, loss(gamma=1.0))
    states, golds, scores = next(states_along_training(component, egs))
    scores = scores.copy()
    scores[:, 0] = -300.0
    exact = numpy.asarray([acceptable_actions(component.moves, s, g) for s, g in zip(states, golds)])
    grad = component.get_batch_loss(states, golds, scores, {})
    expected, _ = component.loss(scores, exact)
    assert_allclose(grad, expected, rtol=0, atol=0)


def test_class_weights_by_entity_label_change_the_gradient():
    _, plain, _, _ = trained("ner_with_loss", steps=2)
    _, weighted, _, _ = trained("ner_with_loss", loss(class_weights={"ORG": 5.0, "O": 0.5}), steps=2)
    assert plain.model.to_bytes() != weighted.model.to_bytes()
    assert weighted.loss.class_weights == {"ORG": 5.0, "O": 0.5}


def test_unknown_label_in_class_weights_is_refused():
    with pytest.raises(ValueError, match="unknown labels: \\['NOPE'\\]"):
        build("ner_with_loss", loss(class_weights={"NOPE": 2.0}))


def test_a_loss_that_cannot_take_action_sets_is_refused():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="must be PartialLabelCrossentropy.v1"):
        nlp.add_pipe("ner_with_loss", config={"loss": {"@losses": "SparseCategoricalCrossentropy.v4"}})


def test_balanced_before_initialize_is_a_clear_error():
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ner_with_loss", config={"loss": loss(class_weights="balanced")})
    ner.add_label("PER")
    with pytest.raises(ValueError, match="counted in initialize"):
        ner.loss


@pytest.mark.parametrize("factory", sorted(BUILTIN))
def test_balanced_weights_are_counted_printed_and_bound(factory):
    nlp, component, egs, _, printed = build(factory, loss(class_weights="balanced"))
    stored = component.cfg[CFG_KEY]
    counts, weights = stored["counts"], stored["weights"]
    n, k = sum(counts.values()), len([c for c in counts.values()])
    for label, count in counts.items():
        if count:
            assert weights[label] == pytest.approx(n / (k * count), abs=1e-6)
            assert component.loss.class_weights[label] == n / (k * count)
        assert label in printed
    assert "label" in printed and "count" in printed and "weight" in printed
    assert component.loss.class_weights == pytest.approx(weights, abs=1e-6)
    if factory == "ner_with_loss":  # gold BILUO tags, 4 copies of: 1 ORG token, 2 LOC, 4 PER (Tom Smith is two)
        assert counts["ORG"] == 4 and counts["LOC"] == 8 and counts["PER"] == 16
    else:  # the oracle's actions
        assert counts["S"] > 0 and counts["nsubj"] == 8


@pytest.mark.parametrize("factory", sorted(BUILTIN))
def test_balanced_weights_are_stored_with_the_pipeline(factory, tmp_path, monkeypatch):
    nlp, component, egs, optimizer, _ = build(factory, loss(class_weights="balanced", gamma=2.0))
    nlp.update(egs, sgd=optimizer)
    nlp.to_disk(tmp_path)
    cls = type(component)
    monkeypatch.setattr(cls, "count_gold_labels", lambda self, examples: pytest.fail("recounted"))
    loaded = spacy.load(tmp_path)
    again = loaded.get_pipe(component.name)
    for key in ("labels", "counts"):  # the weights are derived from them, bit for bit
        assert again.cfg[CFG_KEY][key] == component.cfg[CFG_KEY][key]
    assert repr(again.loss) == repr(component.loss)
    # resumed training uses the stored numbers
    optimizer = loaded.resume_training()
    losses = {}
    loaded.update(egs, sgd=optimizer, losses=losses)
    assert numpy.isfinite(losses[component.name])
    # the same gradient from the loaded component
    for states, golds, scores in states_along_training(component, egs, n_steps=1):
        assert_allclose(
            again.get_batch_loss(states, golds, scores, None), component.get_batch_loss(states, golds, scores, None)
        )


def test_focal_and_weighted_losses_train():
    _, _, _, history = trained("parser_with_loss", loss(gamma=2.0, class_weights={"nsubj": 3.0}), steps=8)
    assert history[-1] < history[0]


def test_ner_balanced_config_trains_and_loads(tmp_path, monkeypatch):
    from spacy.cli.train import train

    monkeypatch.chdir(ROOT)
    path = ROOT / "configs" / "spacy" / "ner_balanced.cfg"
    with redirect_stdout(io.StringIO()) as out:
        train(path, tmp_path, overrides={"training.max_steps": 6, "training.eval_frequency": 3})
    assert "PRODUCT" in out.getvalue()  # the counted table
    nlp = spacy.load(tmp_path / "model-last")
    ner = nlp.get_pipe("ner")
    assert nlp.get_pipe_meta("ner").factory == "ner_with_loss"
    assert ner.loss.class_weights["PRODUCT"] > ner.loss.class_weights["PERSON"]
    nlp("Maria works for Ford in Paris.")


def test_ner_corpus_is_the_generator_output():
    import random
    import sys

    from spacy.tokens import DocBin

    corpus = ROOT / "configs" / "spacy" / "corpus"
    sys.path.insert(0, str(corpus))
    try:
        import make_ner_corpus
    finally:
        sys.path.remove(str(corpus))
    rng = random.Random(make_ner_corpus.SEED)
    nlp = spacy.blank("en")
    for name, n in (("ner_train", make_ner_corpus.N_TRAIN), ("ner_dev", make_ner_corpus.N_DEV)):
        expected = make_ner_corpus.to_docs(nlp.vocab, n, rng)
        shipped = list(DocBin().from_disk(corpus / f"{name}.spacy").get_docs(nlp.vocab))
        assert len(shipped) == len(expected)
        for a, b in zip(shipped, expected):
            assert a.to_json() == b.to_json()
