"""spaCy components with a configurable loss (SPEC section 5).

* defaults reproduce spaCy 3.8's built-in components exactly;
* whatever the output layer (Softmax, softmax_activation, Logistic), the
  gradient reaching the layer's input is the gradient of the configured loss,
  by finite differences through the component's real model;
* pairs that cannot work are refused at ``initialize``;
* ``nlp.to_disk`` / ``spacy.load`` keep the loss; the shipped configs pass
  ``spacy init fill-config`` and ``spacy debug config`` and train;
* a few training steps with each factory lower the loss and raise the scores.
"""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

spacy = pytest.importorskip("spacy")  # the Thinc-alone CI job has no spaCy

from numpy.testing import assert_allclose  # noqa: E402
from spacy.tokens import DocBin  # noqa: E402
from spacy.training import Example  # noqa: E402
from thinc.api import Adam, Linear, Logistic, Ops, chain, fix_random_seed, registry, softmax_activation, with_array  # noqa: E402

from thinc_losses_plus import spacy_components_base  # noqa: E402
from thinc_losses_plus.entry_points import factory_entry_points  # noqa: E402
from thinc_losses_plus.output_layers import LOGISTIC, SOFTMAX, SOFTMAX_ACTIVATION  # noqa: E402
from thinc_losses_plus.output_layers import output_kind  # noqa: E402
from spacy_gradcheck import spy_output_layer  # noqa: E402

ROOT = Path(__file__).parent.parent
SPACY_CONFIGS = sorted((ROOT / "configs" / "spacy").glob("*.cfg"))
CORPUS = ROOT / "configs" / "spacy" / "corpus"
#: every factory of the spacy_factories entry points -> the built-in it extends
FACTORIES = {name: name[: -len("_with_loss")] for name in factory_entry_points()}

# Data ---------------------------------------------------------------------------

CATS = [
    ("I love this film", "POS"),
    ("a terrible and boring film", "NEG"),
    ("great acting but slow", "MIXED"),
    ("what a waste of time", "NEG"),
    ("a wonderful story", "POS"),
    ("good and bad parts", "MIXED"),
]
MULTI = [  # several labels per doc; absent labels are missing values
    ("explosions and a car chase", {"ACTION": 1.0, "COMEDY": 0.0, "DRAMA": 0.0}),
    ("a funny family drama", {"ACTION": 0.0, "COMEDY": 1.0, "DRAMA": 1.0}),
    ("jokes during a car chase", {"ACTION": 1.0, "COMEDY": 1.0}),
    ("tears at the funeral", {"DRAMA": 1.0, "COMEDY": 0.0}),
    ("a quiet story of loss", {"ACTION": 0.0, "COMEDY": 0.0, "DRAMA": 1.0}),
]
TAGS = [
    ("I like green eggs", ["PRP", "VBP", "JJ", "NNS"]),
    ("Eat blue ham", ["VB", "JJ", "NN"]),
    ("They eat green ham", ["PRP", "VBP", "JJ", "NN"]),
    ("blue eggs", ["JJ", "NNS"]),
]
# a missing tag ("") and a negative one ("!NN": not a noun), as spaCy supports
TAGS_PARTIAL = [("You eat eggs", ["PRP", "", "!NN"])]
SENTS = [
    ("This is a sentence . Here is another one .", [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
    ("Short one . And more . Done", [1, 0, 0, 1, 0, 0, 1]),
    ("No break in this text at all", [1, 0, 0, 0, 0, 0, 0]),
]
MORPH = [
    ("I saw ducks", ["PRON", "VERB", "NOUN"], ["Case=Nom|Person=1", "Tense=Past", "Number=Plur"]),
    ("A duck swims", ["DET", "NOUN", "VERB"], ["", "Number=Sing", "Tense=Pres"]),
    ("ducks swim", ["NOUN", "VERB"], ["Number=Plur", "Tense=Pres"]),
]


def examples_for(nlp, base: str, partial: bool = False):
    if base == "textcat":
        labels = ["POS", "NEG", "MIXED"]
        return [Example.from_dict(nlp.make_doc(t), {"cats": {l: float(l == c) for l in labels}}) for t, c in CATS]
    if base == "textcat_multilabel":
        return [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in MULTI]
    if base == "tagger":
        data = TAGS + (TAGS_PARTIAL if partial else [])
        return [Example.from_dict(nlp.make_doc(t), {"tags": tags}) for t, tags in data]
    if base == "senter":
        return [Example.from_dict(nlp.make_doc(t), {"sent_starts": s}) for t, s in SENTS]
    if base == "morphologizer":
        return [Example.from_dict(nlp.make_doc(t), {"pos": p, "morphs": m}) for t, p, m in MORPH]
    raise ValueError(base)


# Architectures ---------------------------------------------------------------------

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


def reduce_textcat(exclusive: bool) -> dict:  # Softmax, or Linear >> Logistic
    return {
        "@architectures": "spacy.TextCatReduce.v1",
        "exclusive_classes": exclusive,
        "use_reduce_first": False,
        "use_reduce_last": False,
        "use_reduce_max": False,
        "use_reduce_mean": True,
        "tok2vec": T2V,
    }


def bow_textcat(exclusive: bool) -> dict:  # softmax_activation, or Logistic
    return {
        "@architectures": "spacy.TextCatBOW.v3",
        "exclusive_classes": exclusive,
        "ngram_size": 1,
        "no_output_layer": False,
        "length": 1024,
    }


TAGGER = {"@architectures": "spacy.Tagger.v2", "tok2vec": T2V}  # with_array(Softmax)


@spacy.registry.architectures("thinc_losses_plus.tests.TaggerActivation.v1")
def tagger_with_activation(tok2vec, nO: int, activation: str):
    """A tagger whose output layer is ``Linear >> softmax_activation`` or ``>> Logistic``."""
    output = softmax_activation() if activation == "softmax_activation" else Logistic()
    return chain(tok2vec, with_array(chain(Linear(nO), output)))


def tagger_activation(activation: str) -> dict:
    n_tags = len({tag for _, tags in TAGS for tag in tags})
    return {
        "@architectures": "thinc_losses_plus.tests.TaggerActivation.v1",
        "tok2vec": T2V,
        "nO": n_tags,
        "activation": activation,
    }


def build(factory: str, config=None, *, partial: bool = False, seed: int = 0):
    """A blank English pipeline with one initialized component, and its examples."""
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    component = nlp.add_pipe(factory, config=config or {})
    base = FACTORIES.get(factory, factory)
    nlp.initialize(lambda: examples_for(nlp, base))
    return nlp, component, examples_for(nlp, base, partial=partial)


def loss(name: str, **settings) -> dict:
    return {"@losses": name, **settings}


# Registration ---------------------------------------------------------------------------


def test_factories_are_the_spacy_factories_entry_points():
    assert {"textcat_with_loss", "spancat_with_loss", "trainable_lemmatizer_with_loss"} <= set(FACTORIES)
    for name, entry_point in factory_entry_points().items():
        module, function = entry_point.value.split(":")
        assert module.startswith("thinc_losses_plus.spacy_") and function == f"make_{name}"
    nlp = spacy.blank("en")  # loads the spacy_factories entry points
    assert all(nlp.has_factory(name) and nlp.has_factory(builtin) for name, builtin in FACTORIES.items())


def test_importing_the_package_does_not_import_spacy():
    code = "import sys, thinc_losses_plus; assert 'spacy' not in sys.modules, 'spacy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_factory_has_every_setting_of_the_builtin_plus_loss(factory):
    from spacy.language import Language

    ours, builtin = Language.get_factory_meta(factory), Language.get_factory_meta(FACTORIES[factory])
    assert set(ours.default_config) == set(builtin.default_config) | {"loss"}
    assert {k: v for k, v in ours.default_config.items() if k != "loss"} == builtin.default_config
    assert ours.default_score_weights == builtin.default_score_weights
    assert ours.assigns == builtin.assigns
    component = spacy.blank("en").add_pipe(factory)
    assert isinstance(component, type(spacy.blank("en").add_pipe(FACTORIES[factory])))


# 2. Defaults reproduce spaCy ------------------------------------------------------------------

EQUAL_CASES = [
    pytest.param("textcat", {}, False, id="textcat-default-ensemble"),
    pytest.param("textcat", {"model": reduce_textcat(True)}, False, id="textcat-reduce-softmax"),
    # spaCy passes scores - truths to softmax_activation too: that is the
    # gradient of 0.5 * |p - t|^2 w.r.t. p, i.e. L2Distance.v2
    pytest.param(
        "textcat",
        {"model": bow_textcat(True), "loss": loss("L2Distance.v2", normalize=False)},
        False,
        id="textcat-bow-l2",
    ),
    pytest.param("textcat_multilabel", {}, False, id="multilabel-default-ensemble"),
    pytest.param("textcat_multilabel", {"model": bow_textcat(False)}, False, id="multilabel-bow"),
    pytest.param("tagger", {"model": TAGGER}, True, id="tagger-missing-and-negative"),
    pytest.param("tagger", {"model": TAGGER, "label_smoothing": 0.1}, False, id="tagger-label-smoothing"),
    pytest.param("tagger", {"model": TAGGER, "neg_prefix": "~"}, False, id="tagger-neg-prefix"),
    # Thinc's own sequence loss, as spaCy calls it (the component passes on neg_prefix = "!")
    pytest.param(
        "tagger",
        {"model": TAGGER, "loss": loss("SequenceCategoricalCrossentropy.v3", normalize=False)},
        True,
        id="tagger-thinc-v3",
    ),
    pytest.param("senter", {}, False, id="senter-default"),
    pytest.param("morphologizer", {"model": TAGGER}, False, id="morphologizer"),
    pytest.param("morphologizer", {"model": TAGGER, "label_smoothing": 0.2}, False, id="morphologizer-label-smoothing"),
]


def param_grads(model):
    return [node.get_grad(name).copy() for node in model.walk() for name in node.param_names if node.has_grad(name)]


@pytest.mark.parametrize("base,config,partial", EQUAL_CASES)
def test_default_loss_gives_the_builtin_gradients(base, config, partial):
    builtin_config = {k: v for k, v in config.items() if k != "loss"}
    _, builtin, examples = build(base, builtin_config, partial=partial)
    _, ours, _ = build(f"{base}_with_loss", config, partial=partial)
    ours.model.from_bytes(builtin.model.to_bytes())
    docs = [eg.predicted for eg in examples]
    scores, _ = builtin.model.begin_update(docs)
    _, expected = builtin.get_loss(examples, scores)
    _, got = ours.get_loss(examples, scores)
    for e, g in zip(expected if isinstance(expected, list) else [expected], got if isinstance(got, list) else [got]):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert_allclose(g, e, rtol=0, atol=1e-7)
    # ... and the same parameter gradients after a whole update
    builtin.update(examples, sgd=None, drop=0.0)
    ours.update(examples, sgd=None, drop=0.0)
    expected_grads, got_grads = param_grads(builtin.model), param_grads(ours.model)
    assert len(expected_grads) == len(got_grads) > 0
    for e, g in zip(expected_grads, got_grads):
        assert_allclose(g, e, rtol=1e-5, atol=1e-7)


def test_textcat_doc_without_a_positive_label_is_masked():
    nlp, component, examples = build("textcat_with_loss", {"model": reduce_textcat(True)})
    labels = component.labels
    examples.append(Example.from_dict(nlp.make_doc("no label at all"), {"cats": {label: 0.0 for label in labels}}))
    scores, _ = component.model.begin_update([eg.predicted for eg in examples])
    _, grad = component.get_loss(examples, scores)
    assert not grad[-1].any() and grad[:-1].any()


def test_a_thinc_loss_without_sample_weights_is_refused_for_missing_values():
    nlp, component, examples = build(
        "textcat_multilabel_with_loss", {"model": bow_textcat(False), "loss": loss("L2Distance.v1")}
    )
    scores, _ = component.model.begin_update([eg.predicted for eg in examples])
    with pytest.raises(ValueError, match="missing values, which need sample weights, and L2Distance takes none"):
        component.get_loss(examples, scores)


def test_changing_the_loss_changes_the_gradient():
    _, builtin, examples = build("textcat", {"model": reduce_textcat(True)})
    _, ours, _ = build(
        "textcat_with_loss",
        {"model": reduce_textcat(True), "loss": loss("CategoricalFocalCrossentropy.v1", normalize=False, gamma=2.0)},
    )
    ours.model.from_bytes(builtin.model.to_bytes())
    scores, _ = builtin.model.begin_update([eg.predicted for eg in examples])
    assert not numpy.allclose(ours.get_loss(examples, scores)[1], builtin.get_loss(examples, scores)[1], atol=1e-4)


def test_multilabel_class_weights_by_label_name():
    """The component supplies its labels, so a config keys BinaryCrossentropy's weights by label."""
    block = loss("BinaryCrossentropy.v1", normalize=False, class_weights={"ACTION": 3.0})
    nlp, component, examples = build("textcat_multilabel_with_loss", {"model": reduce_textcat(False), "loss": block})
    labels = list(component.labels)
    scores, _ = component.model.begin_update([eg.predicted for eg in examples])
    _, d_scores = component.get_loss(examples, scores)
    # The same loss with the weights as a list, unannotated labels masked (weight 0);
    # a Logistic output takes dL/dp as it is.
    weights = [3.0 if label == "ACTION" else 1.0 for label in labels]
    by_list = registry.resolve({"l": loss("BinaryCrossentropy.v1", normalize=False, class_weights=weights)})["l"]
    truths = numpy.asarray([[eg.reference.cats.get(label, 0.0) for label in labels] for eg in examples], dtype="f")
    annotated = numpy.asarray([[float(label in eg.reference.cats) for label in labels] for eg in examples], dtype="f")
    expected = by_list.get_grad(scores, truths, sample_weight=annotated)
    numpy.testing.assert_allclose(d_scores, expected, rtol=1e-5, atol=1e-7)


# 3. Correct gradients whatever the output layer ----------------------------------------------


def gradient_at_output_layer_input(component, examples):
    """Run a real update; return the output layer, its input X, the gradient dL/dX it passed
    back, and the docs' lengths (None for one scores array)."""
    seen = {}

    def get_loss(scores):
        seen["scores"] = scores
        return component.get_loss(examples, scores)

    layer, X, dX = spy_output_layer(component, [eg.predicted for eg in examples], get_loss)
    scores = seen["scores"]
    lengths = [len(s) for s in scores] if isinstance(scores, list) else None
    return layer, X, dX, lengths


def loss_of_layer_input(component, examples, layer, lengths):
    """X -> the component's loss of the output layer's output, in float64 (same weights, pure-numpy Ops)."""
    layer64 = layer.copy()
    layer64.ops = Ops(numpy)
    for name in layer64.param_names:
        layer64.set_param(name, layer64.get_param(name).astype("float64"))

    def f(X):
        Y, _ = layer64._func(layer64, X, True)
        if lengths is not None:
            Y = numpy.split(Y, numpy.cumsum(lengths)[:-1])
        return component.get_loss(examples, Y)[0] * per_doc

    # textcat reports a loss with normalize = false per document (spaCy #9904)
    per_doc = len(examples) if component.report_per_example and not component.loss.normalize else 1

    return f


def assert_gradient_matches_finite_differences(component, examples, *, h=1e-5, rtol=2e-3):
    layer, X, dX, lengths = gradient_at_output_layer_input(component, examples)
    f = loss_of_layer_input(component, examples, layer, lengths)
    X64 = X.astype("float64")
    rng = numpy.random.default_rng(0)
    scale = max(float(numpy.abs(dX).max()), 1e-3)
    # random directions test every entry at once ...
    for _ in range(3):
        v = rng.standard_normal(X.shape)
        numeric = (f(X64 + h * v) - f(X64 - h * v)) / (2 * h)
        assert numeric == pytest.approx(float((dX * v).sum()), rel=rtol, abs=rtol * scale * X.size**0.5)
    # ... and single coordinates
    for index in zip(*(rng.integers(0, d, size=8) for d in X.shape)):
        e = numpy.zeros(X.shape)
        e[index] = h
        numeric = (f(X64 + e) - f(X64 - e)) / (2 * h)
        assert numeric == pytest.approx(float(dX[index]), rel=rtol, abs=rtol * scale)


CLASS_WEIGHTS = {"POS": 1.0, "NEG": 2.5, "MIXED": 0.5}
FD_CASES = [
    # textcat, Softmax (TextCatReduce)
    ("textcat", reduce_textcat(True), SOFTMAX, loss("CategoricalCrossentropy.v4", normalize=False)),
    ("textcat", reduce_textcat(True), SOFTMAX, loss("CategoricalCrossentropy.v4", class_weights=CLASS_WEIGHTS)),
    ("textcat", reduce_textcat(True), SOFTMAX, loss("CategoricalFocalCrossentropy.v1", gamma=2.0, alpha=0.5)),
    ("textcat", reduce_textcat(True), SOFTMAX, loss("SparseCategoricalCrossentropy.v4", label_smoothing=0.1)),
    ("textcat", reduce_textcat(True), SOFTMAX, loss("L2Distance.v2", normalize=False)),
    ("textcat", reduce_textcat(True), SOFTMAX, loss("BinaryCrossentropy.v1")),
    # textcat, softmax_activation (TextCatBOW)
    ("textcat", bow_textcat(True), SOFTMAX_ACTIVATION, loss("CategoricalCrossentropy.v4", normalize=False)),
    ("textcat", bow_textcat(True), SOFTMAX_ACTIVATION, loss("CategoricalFocalCrossentropy.v1", gamma=1.5)),
    (
        "textcat",
        bow_textcat(True),
        SOFTMAX_ACTIVATION,
        loss("SparseCategoricalCrossentropy.v4", class_weights=CLASS_WEIGHTS),
    ),
    ("textcat", bow_textcat(True), SOFTMAX_ACTIVATION, loss("L2Distance.v2")),
    # textcat_multilabel, Logistic (TextCatBOW, TextCatReduce)
    ("textcat_multilabel", bow_textcat(False), LOGISTIC, loss("L2Distance.v2", normalize=False)),
    ("textcat_multilabel", bow_textcat(False), LOGISTIC, loss("BinaryCrossentropy.v1")),
    ("textcat_multilabel", reduce_textcat(False), LOGISTIC, loss("BinaryCrossentropy.v1", label_smoothing=0.1)),
    ("textcat_multilabel", reduce_textcat(False), LOGISTIC, loss("BinaryFocalCrossentropy.v1", gamma=2.0, alpha=0.25)),
    # tagger, Softmax (Tagger.v2), softmax_activation and Logistic (custom)
    ("tagger", TAGGER, SOFTMAX, loss("SequenceCategoricalCrossentropy.v4", normalize=False)),
    ("tagger", TAGGER, SOFTMAX, loss("SequenceCategoricalCrossentropy.v4", label_smoothing=0.1)),
    ("tagger", TAGGER, SOFTMAX, loss("CategoricalFocalCrossentropy.v1", gamma=2.0)),
    ("tagger", TAGGER, SOFTMAX, loss("L2Distance.v2")),
    # two gradient conventions in one loss: each part is converted on its own.
    # (SequenceCategoricalCrossentropy.v4 with normalize = true reports the
    # unnormalised sum, as Thinc's design, so its gradient is that of sum / n.)
    (
        "tagger",
        TAGGER,
        SOFTMAX,
        loss(
            "WeightedSum.v1",
            losses={"ce": loss("SequenceCategoricalCrossentropy.v4", normalize=False), "l2": loss("L2Distance.v2")},
            weights={"l2": 3.0},
        ),
    ),
    (
        "tagger",
        tagger_activation("softmax_activation"),
        SOFTMAX_ACTIVATION,
        loss("SequenceCategoricalCrossentropy.v4", normalize=False),
    ),
    (
        "tagger",
        tagger_activation("softmax_activation"),
        SOFTMAX_ACTIVATION,
        loss("SparseCategoricalCrossentropy.v4", label_smoothing=0.2),
    ),
    ("tagger", tagger_activation("logistic"), LOGISTIC, loss("L2Distance.v2")),
    ("tagger", tagger_activation("logistic"), LOGISTIC, loss("BinaryCrossentropy.v1")),
    # senter and morphologizer, Softmax (Tagger.v2)
    ("senter", TAGGER, SOFTMAX, loss("SequenceCategoricalCrossentropy.v4", normalize=False)),
    ("senter", TAGGER, SOFTMAX, loss("CategoricalFocalCrossentropy.v1", gamma=2.0, class_weights={"S": 3.0})),
    ("morphologizer", TAGGER, SOFTMAX, loss("SequenceCategoricalCrossentropy.v4", label_smoothing=0.1)),
]


def fd_id(case):
    base, model, kind, loss_block = case
    return f"{base}-{kind}-{loss_block['@losses']}"


def trained_a_little(base, model, loss_block, steps=3):
    """A component a few steps away from its initial (often zero) weights."""
    nlp, component, examples = build(f"{base}_with_loss", {"model": model, "loss": loss_block})
    optimizer = nlp.create_optimizer()
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    return component, examples


@pytest.mark.parametrize("case", FD_CASES, ids=[fd_id(c) for c in FD_CASES])
def test_gradient_at_output_layer_input_is_the_loss_gradient(case):
    base, model, kind, loss_block = case
    component, examples = trained_a_little(base, model, loss_block)
    assert output_kind(component.model) == kind
    assert_gradient_matches_finite_differences(component, examples)


@pytest.mark.parametrize(
    "base,model,loss_block",
    [
        ("textcat", bow_textcat(True), loss("CategoricalCrossentropy.v4")),  # needs dL/dp, not p - t
        ("tagger", TAGGER, loss("L2Distance.v2")),  # needs the softmax Jacobian applied
    ],
)
def test_finite_differences_catch_a_gradient_handed_over_unconverted(base, model, loss_block, monkeypatch):
    component, examples = trained_a_little(base, model, loss_block)
    monkeypatch.setattr(spacy_components_base, "adapt_gradient", lambda grad, *args, **kwargs: grad)
    with pytest.raises(AssertionError):
        assert_gradient_matches_finite_differences(component, examples)


REFUSED = [
    ("textcat_multilabel", bow_textcat(False), loss("CategoricalCrossentropy.v4"), "Logistic"),
    ("textcat_multilabel", reduce_textcat(False), loss("SparseCategoricalCrossentropy.v4"), "Logistic"),
    ("textcat_multilabel", bow_textcat(False), loss("CategoricalFocalCrossentropy.v1"), "BinaryCrossentropy"),
    ("tagger", tagger_activation("logistic"), loss("SequenceCategoricalCrossentropy.v4"), "Logistic"),
    ("textcat", reduce_textcat(True), loss("CategoricalCrossentropy.v4", from_logits=True), "from_logits"),
    ("textcat", bow_textcat(True), loss("SparseCategoricalCrossentropy.v4", from_logits=True), "from_logits"),
    ("textcat_multilabel", bow_textcat(False), loss("BinaryCrossentropy.v1", from_logits=True), "from_logits"),
    (
        "tagger",
        TAGGER,
        loss(
            "WeightedSum.v1",
            losses={"a": loss("L2Distance.v2"), "b": loss("SequenceCategoricalCrossentropy.v4", from_logits=True)},
        ),
        "from_logits",
    ),
    ("textcat", reduce_textcat(True), loss("SequenceCategoricalCrossentropy.v4"), "token sequences"),
]


@pytest.mark.parametrize(
    "base,model,loss_block,message", REFUSED, ids=[f"{r[0]}-{r[2]['@losses']}-{r[3]}" for r in REFUSED]
)
def test_incompatible_loss_and_output_layer_refused_at_initialize(base, model, loss_block, message):
    nlp = spacy.blank("en")
    nlp.add_pipe(f"{base}_with_loss", config={"model": model, "loss": loss_block})
    examples = examples_for(nlp, base)
    with pytest.raises(ValueError, match=message) as info:
        nlp.initialize(lambda: examples)
    assert f"'{base}_with_loss'" in str(info.value) and "Cannot use" in str(info.value)


def test_the_loss_block_wins_and_a_warning_names_the_key_to_delete():
    nlp = spacy.blank("en")
    block = loss("SequenceCategoricalCrossentropy.v4", label_smoothing=0.2)
    with pytest.warns(UserWarning, match=r"delete 'label_smoothing' from \[components.x\]: the loss block's"):
        assert nlp.add_pipe("tagger_with_loss", name="x", config={"label_smoothing": 0.1, "loss": block}).loss.label_smoothing == 0.2
    with pytest.warns(UserWarning, match=r"delete 'label_smoothing' from \[components.y\]: its loss L2Distance has no"):
        nlp.add_pipe("tagger_with_loss", name="y", config={"label_smoothing": 0.1, "loss": loss("L2Distance.v2")})
    # the loss block alone, or both equal, is fine
    assert nlp.add_pipe("tagger_with_loss", name="a", config={"loss": block}).loss.label_smoothing == 0.2
    assert (
        nlp.add_pipe("tagger_with_loss", name="b", config={"label_smoothing": 0.2, "loss": block}).loss.label_smoothing
        == 0.2
    )
    # the component's value reaches a loss that leaves it at its default
    forwarded = nlp.add_pipe("tagger_with_loss", name="c", config={"label_smoothing": 0.1, "neg_prefix": "~"}).loss
    assert (forwarded.label_smoothing, forwarded.neg_prefix) == (0.1, "~")


def test_loss_names_that_differ_from_the_labels_are_refused():
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "tagger_with_loss",
        config={"model": TAGGER, "loss": loss("SequenceCategoricalCrossentropy.v4", names=["A", "B"])},
    )
    with pytest.raises(ValueError, match="names"):
        nlp.initialize(lambda: examples_for(nlp, "tagger"))


# 4. Serialization and the command line -----------------------------------------------------

ROUND_TRIP = [
    (
        "textcat_with_loss",
        {
            "model": reduce_textcat(True),
            "loss": loss("CategoricalCrossentropy.v4", class_weights=CLASS_WEIGHTS, label_smoothing=0.1),
        },
    ),
    (
        "textcat_multilabel_with_loss",
        {"model": bow_textcat(False), "loss": loss("BinaryFocalCrossentropy.v1", gamma=1.5)},
    ),
    (
        "tagger_with_loss",
        {"model": TAGGER, "label_smoothing": 0.05, "loss": loss("CategoricalFocalCrossentropy.v1", gamma=1.0)},
    ),
    (
        "senter_with_loss",
        {"model": TAGGER, "loss": loss("SequenceCategoricalCrossentropy.v4", class_weights={"S": 2.0})},
    ),
    (
        "morphologizer_with_loss",
        {"model": TAGGER, "loss": loss("SparseCategoricalCrossentropy.v4", label_smoothing=0.1)},
    ),
]


@pytest.mark.parametrize("factory,config", ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
def test_to_disk_and_load_keep_the_loss(factory, config, tmp_path):
    nlp, component, examples = build(factory, config)
    nlp.update(examples, sgd=nlp.create_optimizer())
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    again = loaded.get_pipe(factory)
    assert type(again) is type(component)
    assert repr(again.loss) == repr(component.loss)
    assert loaded.config["components"][factory]["loss"] == nlp.config["components"][factory]["loss"]
    scores, _ = component.model.begin_update([eg.predicted for eg in examples])
    value, grad = component.get_loss(examples, scores)
    value_again, grad_again = again.get_loss(examples, scores)
    assert value_again == value
    for g, h in zip(
        grad if isinstance(grad, list) else [grad], grad_again if isinstance(grad_again, list) else [grad_again]
    ):
        assert_allclose(h, g, rtol=0, atol=0)
    assert repr(pickle.loads(pickle.dumps(again.loss))) == repr(again.loss)


def test_spacy_configs_are_shipped():
    names = {p.name for p in SPACY_CONFIGS}
    assert {
        "textcat_class_weights.cfg",
        "textcat_focal.cfg",
        "tagger_label_smoothing.cfg",
        "spancat_focal.cfg",
        "lemmatizer_balanced.cfg",
    } <= names


@pytest.mark.parametrize("path", SPACY_CONFIGS, ids=[p.name for p in SPACY_CONFIGS])
def test_fill_config_and_debug_config_accept_the_configs(path, tmp_path, capsys):
    from spacy.cli.debug_config import debug_config
    from spacy.cli.init_config import fill_config
    from thinc.api import Config

    filled_path = tmp_path / "filled.cfg"
    fill_config(filled_path, path)
    # the shipped configs are complete: filling adds nothing
    assert Config().from_disk(filled_path) == Config().from_disk(path)
    debug_config(path)
    assert "Config is valid" in capsys.readouterr().out


def test_spacy_cli_accepts_a_config():
    path = ROOT / "configs" / "spacy" / "textcat_focal.cfg"
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "debug", "config", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config is valid" in result.stdout


@pytest.mark.parametrize("path", SPACY_CONFIGS, ids=[p.name for p in SPACY_CONFIGS])
def test_configs_train_and_the_model_loads(path, tmp_path, monkeypatch):
    from spacy.cli.train import train

    monkeypatch.chdir(ROOT)  # the configs' corpus paths are relative to the repository
    train(path, tmp_path, overrides={"training.max_steps": 6, "training.eval_frequency": 3})
    nlp = spacy.load(tmp_path / "model-last")
    factories = {nlp.get_pipe_meta(name).factory for name in nlp.pipe_names}
    assert factories & set(FACTORIES)
    for name in nlp.pipe_names:  # the loss that ran is the loss that was loaded
        pipe = nlp.get_pipe(name)
        if hasattr(pipe, "configured_loss"):
            assert "balanced" not in repr(pipe.loss), "counted class weights were not stored with the pipeline"
    doc = nlp("The young striker kicked a ball .")
    assert doc.cats or all(t.tag_ for t in doc) or "sc" in doc.spans or all(t.lemma_ for t in doc) or doc.ents


# 5. The corpus ---------------------------------------------------------------------------


def test_corpus_is_the_generator_output():
    sys.path.insert(0, str(CORPUS))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(CORPUS))
    import random

    rng = random.Random(make_corpus.SEED)
    nlp = spacy.blank("en")
    for name, n in (("train", make_corpus.N_TRAIN), ("dev", make_corpus.N_DEV)):
        expected = make_corpus.to_docs(nlp.vocab, make_corpus.generate(n, rng))
        shipped = list(DocBin().from_disk(CORPUS / f"{name}.spacy").get_docs(nlp.vocab))
        assert 100 <= len(shipped) == len(expected)
        for a, b in zip(shipped, expected):
            assert a.to_json() == b.to_json()
    size = sum(p.stat().st_size for p in CORPUS.glob("*.spacy"))
    assert size < 1_000_000


# 6. Training lowers the loss and raises the scores ---------------------------------------------

TRAINING = [
    (
        "textcat_with_loss",
        {
            "model": bow_textcat(True),
            "loss": loss("CategoricalFocalCrossentropy.v1", normalize=False, class_weights=CLASS_WEIGHTS),
        },
        "cats_macro_f",
    ),
    (
        "textcat_multilabel_with_loss",
        {"model": bow_textcat(False), "loss": loss("BinaryCrossentropy.v1", normalize=False)},
        "cats_macro_f",
    ),
    (
        "tagger_with_loss",
        {"model": TAGGER, "loss": loss("SequenceCategoricalCrossentropy.v4", normalize=False, label_smoothing=0.1)},
        "tag_acc",
    ),
    (
        "senter_with_loss",
        {"model": TAGGER, "loss": loss("CategoricalFocalCrossentropy.v1", normalize=False, gamma=1.0)},
        "sents_f",
    ),
    (
        "morphologizer_with_loss",
        {"model": TAGGER, "loss": loss("SparseCategoricalCrossentropy.v4", normalize=False, label_smoothing=0.05)},
        "pos_acc",
    ),
]


@pytest.mark.parametrize("factory,config,score", TRAINING, ids=[t[0] for t in TRAINING])
def test_training_lowers_the_loss_and_raises_the_score(factory, config, score):
    nlp, component, examples = build(factory, config)
    optimizer = Adam(0.01)
    before = nlp.evaluate(examples)[score] or 0.0
    history = []
    for _ in range(25):
        losses = {}
        nlp.update(examples, sgd=optimizer, drop=0.0, losses=losses)
        history.append(losses[factory])
    after = nlp.evaluate(examples)[score]
    assert history[-1] < 0.5 * history[0]
    assert after > before
