"""The imbalance and noisy-label losses in spaCy's components (skipped without spaCy).

* Dice, Tversky and AsymmetricLoss train ``textcat_multilabel_with_loss`` and
  ``spancat_with_loss`` (Logistic outputs), GeneralizedCrossentropy trains
  ``textcat_with_loss`` and ``tagger_with_loss`` (Softmax and
  ``softmax_activation`` outputs): by finite differences through each
  component's real model, the gradient reaching the output layer's input is
  the exact gradient of the configured loss;
* the pairs that cannot work are refused at ``initialize``;
* each shipped config (``configs/spacy/textcat_multilabel_dice.cfg``,
  ``spancat_asymmetric.cfg`` ...)
  builds the configured loss, trains a few steps on the shipped corpus
  (the loss goes down) and survives ``to_disk`` / ``spacy.load``.
"""
from pathlib import Path

import numpy
import pytest

spacy = pytest.importorskip("spacy")  # the Thinc-alone CI job has no spaCy

from spacy.tokens import DocBin  # noqa: E402
from spacy.training import Example  # noqa: E402
from thinc.api import Config, fix_random_seed  # noqa: E402

from thinc_losses_plus import AsymmetricLoss, Dice, GeneralizedCrossentropy, Tversky  # noqa: E402
from thinc_losses_plus.output_layers import LOGISTIC, SOFTMAX, SOFTMAX_ACTIVATION, output_kind  # noqa: E402
from spacy_gradcheck import assert_finite_differences, spy_output_layer  # noqa: E402

ROOT = Path(__file__).parent.parent
CORPUS = ROOT / "configs" / "spacy" / "corpus" / "train.spacy"

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
BOW_MULTI = {"@architectures": "spacy.TextCatBOW.v3", "exclusive_classes": False, "ngram_size": 1, "no_output_layer": False, "length": 1024}
BOW_EXCLUSIVE = {**BOW_MULTI, "exclusive_classes": True}  # softmax_activation
REDUCE_EXCLUSIVE = {  # Softmax
    "@architectures": "spacy.TextCatReduce.v1",
    "exclusive_classes": True,
    "use_reduce_first": False,
    "use_reduce_last": False,
    "use_reduce_max": False,
    "use_reduce_mean": True,
    "tok2vec": T2V,
}
REDUCE_MULTI = {**REDUCE_EXCLUSIVE, "exclusive_classes": False}  # Linear >> Logistic
TAGGER = {"@architectures": "spacy.Tagger.v2", "tok2vec": T2V}  # with_array(Softmax)
SPANCAT = {
    "@architectures": "spacy.SpanCategorizer.v1",
    "scorer": {"@layers": "spacy.LinearLogistic.v1"},
    "reducer": {"@layers": "spacy.mean_max_reducer.v1", "hidden_size": 16},
    "tok2vec": T2V,
}

CATS = [
    ("I love this film", "POS"),
    ("a terrible and boring film", "NEG"),
    ("great acting but slow", "MIXED"),
    ("what a waste of time", "NEG"),
    ("a wonderful story", "POS"),
    ("good and bad parts", "MIXED"),
]
MULTI = [  # absent labels are missing values
    ("explosions and a car chase", {"ACTION": 1.0, "COMEDY": 0.0, "DRAMA": 0.0}),
    ("a funny family drama", {"ACTION": 0.0, "COMEDY": 1.0, "DRAMA": 1.0}),
    ("jokes during a car chase", {"ACTION": 1.0, "COMEDY": 1.0}),
    ("tears at the funeral", {"DRAMA": 1.0, "COMEDY": 0.0}),
    ("a quiet story of loss", {"ACTION": 0.0, "COMEDY": 0.0, "DRAMA": 1.0}),
]
TAGS = [  # with a missing tag ("")
    ("I like green eggs", ["PRP", "VBP", "JJ", "NNS"]),
    ("Eat blue ham", ["VB", "JJ", "NN"]),
    ("They eat green ham", ["PRP", "VBP", "JJ", "NN"]),
    ("You eat eggs", ["PRP", "", "NNS"]),
]
SPANS = [
    ("Alice met Bob in Paris", [(0, 5, "PER"), (10, 13, "PER"), (17, 22, "LOC")]),
    ("Bob Smith flew to New York", [(0, 9, "PER"), (18, 26, "LOC"), (18, 21, "ORG")]),
    ("the weather in Rome", [(15, 19, "LOC")]),
    ("Acme hired Carol", [(0, 4, "ORG"), (11, 16, "PER")]),
]


def examples_for(nlp, base):
    if base == "textcat":
        labels = ["POS", "NEG", "MIXED"]
        return [Example.from_dict(nlp.make_doc(t), {"cats": {label: float(label == c) for label in labels}}) for t, c in CATS]
    if base == "textcat_multilabel":
        return [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in MULTI]
    if base == "tagger":
        return [Example.from_dict(nlp.make_doc(t), {"tags": tags}) for t, tags in TAGS]
    return [Example.from_dict(nlp.make_doc(t), {"spans": {"sc": spans}}) for t, spans in SPANS]


def build(base, model, block, *, steps=3, seed=0):
    """A blank pipeline with one component, initialized and a few updates away from its initial weights."""
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    component = nlp.add_pipe(f"{base}_with_loss", config={"model": model, "loss": block})
    examples = examples_for(nlp, base)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    return nlp, component, examples


def loss(name, **settings):
    return {"@losses": name, **settings}


FD_CASES = [
    ("textcat_multilabel", BOW_MULTI, LOGISTIC, loss("Dice.v1", average="macro")),
    ("textcat_multilabel", REDUCE_MULTI, LOGISTIC, loss("Dice.v1", self_adjusting=0.5, squared_denominator=True)),
    ("textcat_multilabel", REDUCE_MULTI, LOGISTIC, loss("Tversky.v1", average="macro")),
    ("textcat_multilabel", BOW_MULTI, LOGISTIC, loss("AsymmetricLoss.v1")),
    ("textcat_multilabel", REDUCE_MULTI, LOGISTIC, loss("AsymmetricLoss.v1", gamma_pos=1.0, clip=0.1, normalize=False)),
    ("spancat", SPANCAT, LOGISTIC, loss("Dice.v1", average="macro", smooth=0.1)),
    ("spancat", SPANCAT, LOGISTIC, loss("AsymmetricLoss.v1", gamma_neg=2.0)),
    ("textcat", REDUCE_EXCLUSIVE, SOFTMAX, loss("GeneralizedCrossentropy.v1")),
    ("textcat", BOW_EXCLUSIVE, SOFTMAX_ACTIVATION, loss("GeneralizedCrossentropy.v1", q=0.3, normalize=False)),
    ("tagger", TAGGER, SOFTMAX, loss("GeneralizedCrossentropy.v1", q=0.5)),
]


@pytest.mark.parametrize("case", FD_CASES, ids=[f"{c[0]}-{c[2]}-{c[3]['@losses']}-{i}" for i, c in enumerate(FD_CASES)])
def test_gradient_at_the_output_layer_input_is_the_loss_gradient(case):
    base, model, kind, block = case
    nlp, component, examples = build(base, model, block)
    assert output_kind(component.model) == kind
    assert type(component.loss).__name__ == block["@losses"].split(".")[0]
    docs = [eg.predicted for eg in examples]
    if base == "spancat":
        spans = component.suggester(docs, ops=component.model.ops)
        layer, X, dX = spy_output_layer(component, (docs, spans), lambda s: component.get_loss(examples, (spans, s)))
        assert_finite_differences(layer, X, dX, lambda Y: component.get_loss(examples, (spans, Y))[0])
        return
    layer, X, dX = spy_output_layer(component, docs, lambda s: component.get_loss(examples, s))
    # text classifiers report a normalize = false loss per document (spaCy's convention);
    # the gradient is the loss's own
    per_doc = getattr(component, "report_per_example", False) and not component.loss.normalize
    scale = len(docs) if per_doc else 1
    if base == "tagger":  # the layer sees the tokens of all docs at once; the loss takes one array per doc
        lengths = numpy.cumsum([len(doc) for doc in docs])[:-1]
        assert_finite_differences(layer, X, dX, lambda Y: component.get_loss(examples, numpy.split(Y, lengths))[0])
    else:
        assert_finite_differences(layer, X, dX, lambda Y: component.get_loss(examples, Y)[0] * scale)


@pytest.mark.parametrize(
    "base,model,block,message",
    [
        ("textcat_multilabel", BOW_MULTI, loss("GeneralizedCrossentropy.v1"), "scores softmax distributions"),
        ("textcat_multilabel", BOW_MULTI, loss("Dice.v1", from_logits=True), "from_logits"),
        ("textcat_multilabel", REDUCE_MULTI, loss("AsymmetricLoss.v1", from_logits=True), "from_logits"),
        ("textcat", REDUCE_EXCLUSIVE, loss("GeneralizedCrossentropy.v1", from_logits=True), "from_logits"),
    ],
)
def test_pairs_that_cannot_work_are_refused_at_initialize(base, model, block, message):
    nlp = spacy.blank("en")
    nlp.add_pipe(f"{base}_with_loss", config={"model": model, "loss": block})
    examples = examples_for(nlp, base)
    with pytest.raises(ValueError, match=message) as info:
        nlp.initialize(lambda: examples)
    assert "Cannot use" in str(info.value)


SHIPPED = [
    ("textcat_multilabel_dice.cfg", "textcat_multilabel", Dice),
    ("textcat_multilabel_tversky.cfg", "textcat_multilabel", Tversky),
    ("textcat_multilabel_asymmetric.cfg", "textcat_multilabel", AsymmetricLoss),
    ("textcat_noisy_labels.cfg", "textcat", GeneralizedCrossentropy),
    ("spancat_asymmetric.cfg", "spancat", AsymmetricLoss),
]


@pytest.mark.parametrize("config_name,pipe_name,cls", SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_configs_train_a_few_steps_and_round_trip(config_name, pipe_name, cls, tmp_path):
    config = Config().from_disk(ROOT / "configs" / "spacy" / config_name)
    fix_random_seed(0)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    docs = list(DocBin().from_disk(CORPUS).get_docs(nlp.vocab))[:96]
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    optimizer = nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe(pipe_name)
    assert type(pipe.loss) is cls
    history = []
    for step in range(12):
        losses = {}
        nlp.update(examples[step % 3 * 32 : (step % 3 + 1) * 32], sgd=optimizer, losses=losses)
        history.append(losses[pipe_name])
    assert sum(history[-3:]) < sum(history[:3])
    nlp.to_disk(tmp_path)
    again = spacy.load(tmp_path)
    assert repr(again.get_pipe(pipe_name).loss) == repr(pipe.loss)
    assert again.config["components"][pipe_name]["loss"] == config["components"][pipe_name]["loss"]
