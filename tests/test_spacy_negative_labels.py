"""Negative labels ("!NN": not a noun) reach every loss that takes labels (issue 9).

spaCy's tagger supports partial annotation: a missing tag ("") and a
negative tag (``neg_prefix + tag``). Dense one-hot rows cannot say "not NN",
so a ``tagger_with_loss`` hands a flat label list to every loss that takes
labels (``takes_labels``): the sparse cross-entropy, focal loss and the
generalized cross-entropy, which score "not y" themselves, and MultiMargin.
The tests build the pipeline from a config string, train it on examples with
negative tags, and check the gradient handed to the output layer against the
loss called on the label list, and by finite differences through the real
model.
"""
import numpy
import pytest

spacy = pytest.importorskip("spacy")  # the Thinc-alone CI job has no spaCy

from spacy.training import Example  # noqa: E402
from thinc.api import Config, fix_random_seed  # noqa: E402

from spacy_gradcheck import assert_finite_differences, spy_output_layer  # noqa: E402
from thinc_losses_plus import (  # noqa: E402
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    GeneralizedCrossentropy,
    L2Distance,
    MultiMargin,
    SparseCategoricalCrossentropy,
)
from thinc_losses_plus.spacy_components_base import DENSE, LABELS, truth_format  # noqa: E402

CONFIG = """
[nlp]
lang = "en"
pipeline = ["tagger"]

[components]

[components.tagger]
factory = "tagger_with_loss"

[components.tagger.model]
@architectures = "spacy.Tagger.v2"
nO = null

[components.tagger.model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 16
depth = 1
embed_size = 300
window_size = 1
maxout_pieces = 2
subword_features = true

[components.tagger.loss]
@losses = "{name}"
normalize = false
{settings}
"""

TAGS = [
    ("I like green eggs", ["PRP", "VBP", "JJ", "NNS"]),
    ("Eat blue ham", ["VB", "JJ", "NN"]),
    ("They eat green ham", ["PRP", "VBP", "JJ", "NN"]),
    ("blue eggs", ["JJ", "NNS"]),
]
# partial annotation: a missing tag ("") and negative tags ("not a noun", "not an adjective")
PARTIAL = [("You eat eggs", ["PRP", "", "!NN"]), ("green ham", ["!JJ", "NN"])]

LOSSES = [
    pytest.param("CategoricalFocalCrossentropy.v1", "gamma = 2.0", id="focal"),
    pytest.param("GeneralizedCrossentropy.v1", "q = 0.7", id="gce"),
]


def tagger_from_config(name: str, settings: str, steps: int = 3):
    """A tagger built from the config string, trained ``steps`` updates on examples with negative tags."""
    fix_random_seed(0)
    config = Config().from_str(CONFIG.replace("{name}", name).replace("{settings}", settings))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example.from_dict(nlp.make_doc(t), {"tags": tags}) for t, tags in TAGS + PARTIAL]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        losses = {}
        nlp.update(examples, sgd=optimizer, drop=0.0, losses=losses)
        assert numpy.isfinite(losses["tagger"])
    return nlp, nlp.get_pipe("tagger"), examples


def flat_labels(examples):
    return [tag or None for eg in examples for tag in eg.get_aligned("TAG", as_string=True)]


@pytest.mark.parametrize("name,settings", LOSSES)
def test_negative_tags_reach_the_loss_as_labels(name, settings):
    nlp, tagger, examples = tagger_from_config(name, settings)
    assert tagger.loss.neg_prefix == "!"  # the tagger's neg_prefix, passed on to the loss
    assert truth_format(tagger.loss) == LABELS
    scores, _ = tagger.model.begin_update([eg.predicted for eg in examples])  # probabilities (training mode)
    value, d_scores = tagger.get_loss(examples, scores)
    labels = flat_labels(examples)
    assert "!NN" in labels and "!JJ" in labels and None in labels
    # the gradient (w.r.t. the logits: Softmax output) is the loss's own for the label list
    expected_grad, expected_value = tagger.loss(numpy.concatenate(scores), labels)
    numpy.testing.assert_array_equal(numpy.concatenate(d_scores), expected_grad)
    assert value == pytest.approx(expected_value, rel=1e-6)
    # a negative tag trains its token (a missing tag gives a zero row), and differently from a missing tag
    flat = numpy.concatenate(d_scores)
    assert not flat[labels.index(None)].any()
    negative = labels.index("!NN")
    assert flat[negative].any()
    as_missing = [None if label == "!NN" else label for label in labels]
    numpy.testing.assert_array_equal(tagger.loss(numpy.concatenate(scores), as_missing)[0][negative], 0.0)


@pytest.mark.parametrize("name,settings", LOSSES)
def test_negative_tag_gradient_matches_finite_differences(name, settings):
    _, tagger, examples = tagger_from_config(name, settings)
    docs = [eg.predicted for eg in examples]
    lengths = [len(doc) for doc in docs]
    layer, X, dX = spy_output_layer(tagger, docs, lambda scores: tagger.get_loss(examples, scores))

    def loss_of_Y(Y):
        return tagger.get_loss(examples, numpy.split(Y, numpy.cumsum(lengths)[:-1]))[0]

    assert_finite_differences(layer, X, dX, loss_of_Y)


def test_multimargin_trains_a_tagger_from_labels():
    """MultiMargin takes labels only: the tagger hands it labels (missing tags masked)."""
    nlp, tagger, examples = tagger_from_config("MultiMargin.v1", "p = 2")
    partial = [eg for eg in examples if "!" not in " ".join(eg.get_aligned("TAG", as_string=True))]
    docs = [eg.predicted for eg in partial]
    lengths = [len(doc) for doc in docs]
    layer, X, dX = spy_output_layer(tagger, docs, lambda scores: tagger.get_loss(partial, scores))

    def loss_of_Y(Y):
        return tagger.get_loss(partial, numpy.split(Y, numpy.cumsum(lengths)[:-1]))[0]

    assert_finite_differences(layer, X, dX, loss_of_Y)


def test_which_losses_take_labels():
    assert SparseCategoricalCrossentropy.takes_labels and CategoricalFocalCrossentropy.takes_labels
    assert GeneralizedCrossentropy.takes_labels and MultiMargin.takes_labels
    assert not CategoricalCrossentropy.takes_labels and not L2Distance.takes_labels
    # doc and span classifiers keep target rows for a loss that takes rows too
    assert truth_format(CategoricalFocalCrossentropy(), rows=True) == DENSE
    assert truth_format(MultiMargin(), rows=True) == LABELS


def test_textcat_refuses_a_soft_value_for_a_loss_of_one_label_per_doc():
    fix_random_seed(0)
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("textcat_with_loss", config={"loss": {"@losses": "SparseCategoricalCrossentropy.v4"}})
    examples = [
        Example.from_dict(nlp.make_doc("a good film"), {"cats": {"POS": 1.0, "NEG": 0.0}}),
        Example.from_dict(nlp.make_doc("a bad film"), {"cats": {"POS": 0.0, "NEG": 1.0}}),
    ]
    nlp.initialize(lambda: examples)
    soft = examples + [Example.from_dict(nlp.make_doc("so so"), {"cats": {"POS": 0.5, "NEG": 0.5}})]
    scores, _ = textcat.model.begin_update([eg.predicted for eg in soft])
    with pytest.raises(ValueError, match="takes one label per doc"):
        textcat.get_loss(soft, scores)
    assert numpy.isfinite(textcat.get_loss(examples, scores[:2])[0])
