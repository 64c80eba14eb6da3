"""spancat, spancat_singlelabel, span_finder, trainable_lemmatizer, entity_linker with a loss.

* the default loss trains bit for bit as the built-in (same config with only
  the factory changed, same seed, same updates: identical ``model.to_bytes()``);
* with the sigmoid losses on the Logistic scorer and the categorical losses
  on the Softmax scorer, the gradient reaching the scorer's input is the
  configured loss's (finite differences through the real model);
* negative_weight and the negative label reach any loss.
"""

import numpy
import pytest

spacy = pytest.importorskip("spacy")

from spacy.kb import InMemoryLookupKB  # noqa: E402
from spacy.training import Example  # noqa: E402
from thinc.api import fix_random_seed  # noqa: E402

from thinc_losses_plus.output_layers import LOGISTIC, SOFTMAX, output_kind  # noqa: E402
from spacy_gradcheck import assert_finite_differences, spy_output_layer  # noqa: E402

T2V = {
    "@architectures": "spacy.HashEmbedCNN.v2",
    "pretrained_vectors": None,
    "width": 16,
    "depth": 1,
    "embed_size": 300,
    "window_size": 1,
    "maxout_pieces": 2,
    "subword_features": True,
}


def span_model(scorer: str) -> dict:
    return {
        "@architectures": "spacy.SpanCategorizer.v1",
        "scorer": {"@layers": scorer},
        "reducer": {"@layers": "spacy.mean_max_reducer.v1", "hidden_size": 16},
        "tok2vec": T2V,
    }


LOGISTIC_MODEL = span_model("spacy.LinearLogistic.v1")
SOFTMAX_MODEL = span_model("Softmax.v2")
SPAN_FINDER_MODEL = {
    "@architectures": "spacy.SpanFinder.v1",
    "tok2vec": T2V,
    "scorer": {"@layers": "spacy.LinearLogistic.v1", "nO": 2},
}
LEMMATIZER_MODEL = {"@architectures": "spacy.Tagger.v2", "tok2vec": T2V}

SPANS = [
    ("Alice met Bob in Paris", [(0, 5, "PER"), (10, 13, "PER"), (17, 22, "LOC")]),
    ("Bob Smith flew to New York", [(0, 9, "PER"), (18, 26, "LOC"), (18, 21, "ORG")]),
    ("the weather in Rome", [(15, 19, "LOC")]),
    ("Acme hired Carol", [(0, 4, "ORG"), (11, 16, "PER")]),
]
SINGLE_SPANS = [(t, [s for s in spans if s != (18, 21, "ORG")]) for t, spans in SPANS]
LEMMAS = [
    ("She likes green eggs", ["she", "like", "green", "egg"]),
    ("Eat blue ham", ["eat", "blue", "ham"]),
    ("He hates blue eggs", ["he", "hate", "blue", ""]),  # a missing lemma
]
LINKS = [
    ("Russ Cochran his reprints include EC Comics.", {"links": {(0, 12): {"Q7381115": 1.0, "Q2146908": 0.0}}}),
    ("Russ Cochran has been publishing comic art.", {"links": {(0, 12): {"Q7381115": 1.0, "Q2146908": 0.0}}}),
    ("Russ Cochran captured his first major title.", {"links": {(0, 12): {"Q7381115": 0.0, "Q2146908": 1.0}}}),
]


def examples_for(nlp, base):
    if base in ("spancat", "span_finder"):
        return [Example.from_dict(nlp.make_doc(t), {"spans": {"sc": spans}}) for t, spans in SPANS]
    if base == "spancat_singlelabel":
        return [Example.from_dict(nlp.make_doc(t), {"spans": {"sc": spans}}) for t, spans in SINGLE_SPANS]
    if base == "trainable_lemmatizer":
        return [Example.from_dict(nlp.make_doc(t), {"lemmas": lemmas}) for t, lemmas in LEMMAS]
    if base == "entity_linker":
        examples = []
        for text, annotation in LINKS:
            ents = [(start, end, "PERSON") for start, end in annotation["links"]]
            doc = nlp.make_doc(text)
            examples.append(Example.from_dict(doc, {**annotation, "entities": ents}))
        return examples
    raise ValueError(base)


def create_kb(vocab):
    kb = InMemoryLookupKB(vocab, entity_vector_length=3)
    kb.add_entity(entity="Q2146908", freq=12, entity_vector=[6, -4, 3])
    kb.add_entity(entity="Q7381115", freq=12, entity_vector=[9, 1, -7])
    kb.add_alias(alias="Russ Cochran", entities=["Q2146908", "Q7381115"], probabilities=[0.5, 0.5])
    return kb


DEFAULT_MODELS = {
    "spancat": LOGISTIC_MODEL,
    "spancat_singlelabel": SOFTMAX_MODEL,
    "span_finder": SPAN_FINDER_MODEL,
    "trainable_lemmatizer": LEMMATIZER_MODEL,
}


def build(factory, config=None, *, seed=0):
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    base = factory[: -len("_with_loss")] if factory.endswith("_with_loss") else factory
    config = dict(config or {})
    if base in DEFAULT_MODELS:
        config.setdefault("model", DEFAULT_MODELS[base])
    if base == "trainable_lemmatizer":
        config.setdefault("min_tree_freq", 1)
    if base == "entity_linker":
        config.setdefault("use_gold_ents", True)
    component = nlp.add_pipe(factory, config=config)
    if base == "entity_linker":
        component.set_kb(create_kb)
    examples = examples_for(nlp, base)
    optimizer = nlp.initialize(lambda: examples)
    return nlp, component, examples, optimizer


BASES = ["spancat", "spancat_singlelabel", "span_finder", "trainable_lemmatizer", "entity_linker"]


@pytest.mark.parametrize(
    "base,config",
    [(base, {}) for base in BASES]
    + [("spancat_singlelabel", {"negative_weight": 0.3})],
    ids=BASES + ["spancat_singlelabel-negative_weight"],
)
def test_default_loss_trains_bit_for_bit_as_the_builtin(base, config):
    models = []
    losses = []
    for factory in (base, f"{base}_with_loss"):
        nlp, component, examples, optimizer = build(factory, config)
        history = []
        for _ in range(3):
            step = {}
            nlp.update(examples, sgd=optimizer, losses=step)
            history.append(step[factory])
        models.append(component.model.to_bytes())
        losses.append(history)
    assert models[0] == models[1]


def test_singlelabel_negative_weight_reaches_any_loss():
    block = {"@losses": "CategoricalFocalCrossentropy.v1", "normalize": False, "gamma": 2.0}
    grads = []
    for negative_weight in (1.0, 0.25):
        nlp, component, examples, _ = build(
            "spancat_singlelabel_with_loss", {"negative_weight": negative_weight, "loss": block}
        )
        docs = [eg.predicted for eg in examples]
        spans = component.suggester(docs, ops=component.model.ops)
        scores = component.model.predict((docs, spans))
        grads.append(component.get_loss(examples, (spans, scores))[1])
        negative_rows = component._targets(examples, spans, scores)[1]
    assert negative_rows.any() and not negative_rows.all()
    numpy.testing.assert_allclose(grads[1][negative_rows], 0.25 * grads[0][negative_rows], rtol=1e-6)
    numpy.testing.assert_array_equal(grads[1][~negative_rows], grads[0][~negative_rows])


def test_singlelabel_negative_label_is_a_named_column():
    block = {"@losses": "CategoricalCrossentropy.v4", "class_weights": {"<negative>": 0.1}}
    _, component, _, _ = build("spancat_singlelabel_with_loss", {"loss": block})
    assert component.loss.names == list(component.labels) + ["<negative>"]
    assert component.loss.class_weights == {"<negative>": 0.1}


# Finite differences through the real model ------------------------------------------------


def loss(name, **settings):
    return {"@losses": name, **settings}


SPAN_FD = [
    ("spancat", LOGISTIC_MODEL, LOGISTIC, loss("BinaryCrossentropy.v1")),
    ("spancat", LOGISTIC_MODEL, LOGISTIC, loss("BinaryCrossentropy.v1", class_weights={"PER": 2.0}, label_smoothing=0.1)),
    ("spancat", LOGISTIC_MODEL, LOGISTIC, loss("BinaryFocalCrossentropy.v1", gamma=2.0, alpha=0.25)),
    ("spancat", LOGISTIC_MODEL, LOGISTIC, loss("L2Distance.v2", normalize=False)),
    ("spancat_singlelabel", SOFTMAX_MODEL, SOFTMAX, loss("CategoricalCrossentropy.v4", normalize=False)),
    ("spancat_singlelabel", SOFTMAX_MODEL, SOFTMAX, loss("CategoricalCrossentropy.v4", label_smoothing=0.1)),
    ("spancat_singlelabel", SOFTMAX_MODEL, SOFTMAX, loss("CategoricalFocalCrossentropy.v1", gamma=2.0)),
    ("spancat_singlelabel", SOFTMAX_MODEL, SOFTMAX, loss("SparseCategoricalCrossentropy.v4", class_weights={"PER": 3.0})),
    ("spancat_singlelabel", SOFTMAX_MODEL, SOFTMAX, loss("L2Distance.v2")),
]


@pytest.mark.parametrize("case", SPAN_FD, ids=[f"{c[0]}-{c[3]['@losses']}-{i}" for i, c in enumerate(SPAN_FD)])
def test_spancat_gradient_at_the_scorer_input_is_the_loss_gradient(case):
    base, model, kind, block = case
    config = {"model": model, "loss": block}
    if base == "spancat_singlelabel":
        config["negative_weight"] = 0.5
    nlp, component, examples, optimizer = build(f"{base}_with_loss", config)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    assert output_kind(component.model) == kind
    docs = [eg.predicted for eg in examples]
    spans = component.suggester(docs, ops=component.model.ops)
    layer, X, dX = spy_output_layer(component, (docs, spans), lambda s: component.get_loss(examples, (spans, s)))
    assert_finite_differences(layer, X, dX, lambda Y: component.get_loss(examples, (spans, Y))[0])


@pytest.mark.parametrize(
    "block",
    [loss("BinaryCrossentropy.v1"), loss("BinaryFocalCrossentropy.v1", gamma=1.0), loss("L2Distance.v2")],
    ids=lambda b: b["@losses"],
)
def test_span_finder_gradient_is_the_loss_gradient(block):
    nlp, component, examples, optimizer = build("span_finder_with_loss", {"loss": block})
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    assert output_kind(component.model) == LOGISTIC
    docs = [eg.predicted for eg in examples]
    layer, X, dX = spy_output_layer(component, docs, lambda s: component.get_loss(examples, s))
    assert X.shape[0] == sum(len(doc) for doc in docs)  # with_array: all tokens at once
    assert_finite_differences(layer, X, dX, lambda Y: component.get_loss(examples, Y)[0])


@pytest.mark.parametrize(
    "block",
    [loss("SequenceCategoricalCrossentropy.v4", label_smoothing=0.1, missing_value=-1), loss("CategoricalFocalCrossentropy.v1", gamma=2.0)],
    ids=lambda b: b["@losses"],
)
def test_lemmatizer_gradient_is_the_loss_gradient(block):
    nlp, component, examples, optimizer = build("trainable_lemmatizer_with_loss", {"loss": block})
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    assert output_kind(component.model) == SOFTMAX
    docs = [eg.predicted for eg in examples]
    layer, X, dX = spy_output_layer(component, docs, lambda s: component.get_loss(examples, s))
    lengths = [len(doc) for doc in docs]

    def loss_of_Y(Y):
        return component.get_loss(examples, numpy.split(Y, numpy.cumsum(lengths)[:-1]))[0]

    assert_finite_differences(layer, X, dX, loss_of_Y)


def test_lemmatizer_missing_lemma_is_masked_by_any_loss():
    for block in (loss("SequenceCategoricalCrossentropy.v4", normalize=False), loss("SparseCategoricalCrossentropy.v4")):
        _, component, examples, _ = build("trainable_lemmatizer_with_loss", {"loss": block})
        scores, _ = component.model.begin_update([eg.predicted for eg in examples])
        grad = component.get_loss(examples, scores)[1]
        assert not grad[2][3].any() and grad[2][2].any()


def test_entity_linker_with_l2_loss_trains():
    nlp, component, examples, optimizer = build("entity_linker_with_loss", {"loss": loss("L2Distance.v2")})
    history = []
    for _ in range(20):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        history.append(step["entity_linker_with_loss"])
    assert history[-1] < history[0]


@pytest.mark.parametrize(
    "factory,block,message",
    [
        ("spancat_with_loss", loss("CategoricalCrossentropy.v4"), "Logistic"),
        ("span_finder_with_loss", loss("SparseCategoricalCrossentropy.v4"), "Logistic"),
        ("entity_linker_with_loss", loss("SparseCategoricalCrossentropy.v4"), "knowledge-base vectors"),
        ("spancat_singlelabel_with_loss", loss("SequenceCategoricalCrossentropy.v4"), "token sequences"),
    ],
)
def test_incompatible_losses_are_refused_at_initialize(factory, block, message):
    with pytest.raises(ValueError, match=message):
        build(factory, {"loss": block})
