"""``class_weights = "balanced"`` in a component's loss block, ``pipe.loss``, and #9904.

* weights ``n / (n_classes * n_c)`` counted in ``initialize``: documents for
  textcat, tokens for the tagger family and the lemmatizer, spans for spancat;
* printed as a table (label, count, weight) when training starts;
* stored with the pipeline: ``spacy.load`` binds them without counting again;
* labels never seen weigh 1.0;
* ``pipe.loss`` after ``initialize`` is the loss that runs;
* the reported textcat loss does not depend on the batch size (spaCy #9904).
"""

import pytest

spacy = pytest.importorskip("spacy")

from spacy.training import Example  # noqa: E402
from thinc.api import fix_random_seed  # noqa: E402

from thinc_losses_plus.class_weights import balanced_class_weights  # noqa: E402

CATS = [("good film", "POS"), ("bad film", "NEG"), ("great film", "POS"), ("fine film", "POS"), ("dull", "NEG"), ("meh", "MIXED")]
TAGS = [("I like eggs", ["PRP", "VBP", "NNS"]), ("Eat ham", ["VB", "NN"]), ("They eat ham", ["PRP", "VBP", "NN"])]
SPANS = [
    ("Alice met Bob in Paris", [(0, 5, "PER"), (10, 13, "PER"), (17, 22, "LOC")]),
    ("Bob flew to Rome", [(0, 3, "PER"), (12, 16, "LOC")]),
    ("Carol smiled", [(0, 5, "PER")]),
]
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
REDUCE = {
    "@architectures": "spacy.TextCatReduce.v1",
    "exclusive_classes": True,
    "use_reduce_first": False,
    "use_reduce_last": False,
    "use_reduce_max": False,
    "use_reduce_mean": True,
    "tok2vec": T2V,
}
SPANCAT = {
    "@architectures": "spacy.SpanCategorizer.v1",
    "scorer": {"@layers": "spacy.LinearLogistic.v1"},
    "reducer": {"@layers": "spacy.mean_max_reducer.v1", "hidden_size": 16},
    "tok2vec": T2V,
}


def examples(nlp, base):
    if base == "textcat":
        labels = ["POS", "NEG", "MIXED"]
        return [Example.from_dict(nlp.make_doc(t), {"cats": {l: float(l == c) for l in labels}}) for t, c in CATS]
    if base == "tagger":
        return [Example.from_dict(nlp.make_doc(t), {"tags": tags}) for t, tags in TAGS]
    if base.startswith("spancat"):
        return [Example.from_dict(nlp.make_doc(t), {"spans": {"sc": s}}) for t, s in SPANS]
    if base == "trainable_lemmatizer":
        data = [("She likes eggs", ["she", "like", "egg"]), ("He likes ham", ["he", "like", "ham"])]
        return [Example.from_dict(nlp.make_doc(t), {"lemmas": lemmas}) for t, lemmas in data]
    raise ValueError(base)


def build(base, loss, model=None, **config):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    if model is not None:
        config["model"] = model
    component = nlp.add_pipe(f"{base}_with_loss", name=base, config={**config, "loss": loss})
    egs = examples(nlp, base)
    nlp.initialize(lambda: egs)
    return nlp, component, egs


BALANCED_CE = {"@losses": "CategoricalCrossentropy.v4", "normalize": False, "class_weights": "balanced"}


def test_textcat_counts_documents_and_prints_the_table(capsys):
    _, textcat, _ = build("textcat", BALANCED_CE, REDUCE)
    # 6 documents, 3 classes: POS 3, NEG 2, MIXED 1
    expected = {"POS": 6 / (3 * 3), "NEG": 6 / (3 * 2), "MIXED": 6 / (3 * 1)}
    assert textcat.loss.class_weights == pytest.approx(expected)
    assert textcat.loss.names == list(textcat.labels)
    out = capsys.readouterr().out
    assert "Class weights of 'textcat'" in out and "counted over 6 documents" in out
    for label, count in (("POS", 3), ("NEG", 2), ("MIXED", 1)):
        line = next(line for line in out.splitlines() if line.strip().startswith(label))
        assert line.split()[1] == str(count) and float(line.split()[2]) == pytest.approx(expected[label], rel=1e-5)


def test_tagger_counts_tokens_and_matches_the_thinc_function():
    block = {"@losses": "SequenceCategoricalCrossentropy.v4", "class_weights": "balanced"}
    _, tagger, egs = build("tagger", block, {"@architectures": "spacy.Tagger.v2", "tok2vec": T2V})
    truths = [[t.tag_ for t in eg.reference] for eg in egs]
    assert tagger.loss.class_weights == pytest.approx(balanced_class_weights(truths, labels=tagger.labels))


def test_spancat_counts_spans():
    block = {"@losses": "BinaryCrossentropy.v1", "class_weights": "balanced"}
    _, spancat, _ = build("spancat", block, SPANCAT)
    assert spancat.loss.class_weights == pytest.approx({"PER": 6 / (2 * 4), "LOC": 6 / (2 * 2)})


def test_spancat_singlelabel_counts_the_negative_spans():
    block = {"@losses": "CategoricalCrossentropy.v4", "class_weights": "balanced"}
    model = {**SPANCAT, "scorer": {"@layers": "Softmax.v2"}}
    nlp, spancat, egs = build("spancat_singlelabel", block, model)
    suggested = sum(int(spancat.suggester([eg.predicted]).dataXd.shape[0]) for eg in egs)
    negatives = suggested - 6
    n = 6 + negatives
    weights = spancat.loss.class_weights
    assert weights["<negative>"] == pytest.approx(n / (3 * negatives))
    assert weights["PER"] == pytest.approx(n / (3 * 4))


def test_lemmatizer_weights_are_a_list_by_column():
    block = {"@losses": "SequenceCategoricalCrossentropy.v4", "class_weights": "balanced"}
    _, lemmatizer, _ = build("trainable_lemmatizer", block, min_tree_freq=1)
    weights = lemmatizer.loss.class_weights
    assert isinstance(weights, list) and len(weights) == len(lemmatizer.labels)
    assert sum(weights) > 0


def test_a_label_never_seen_weighs_one():
    fix_random_seed(0)
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("textcat_with_loss", config={"model": REDUCE, "loss": BALANCED_CE})
    textcat.add_label("UNSEEN")
    egs = examples(nlp, "textcat")
    nlp.initialize(lambda: egs)
    assert textcat.loss.class_weights["UNSEEN"] == 1.0
    assert textcat.loss.class_weights["POS"] == pytest.approx(6 / (4 * 3))


def test_weights_are_stored_with_the_pipeline_and_not_counted_again(tmp_path, monkeypatch):
    from thinc_losses_plus.spacy_components import TextCategorizerWithLoss

    nlp, textcat, egs = build("textcat", BALANCED_CE, REDUCE)
    nlp.to_disk(tmp_path)

    def no_counting(self, get_examples):
        raise AssertionError("counted again")

    monkeypatch.setattr(TextCategorizerWithLoss, "_class_counts", no_counting)
    loaded = spacy.load(tmp_path)
    again = loaded.get_pipe("textcat")
    assert again.loss.class_weights == textcat.loss.class_weights
    assert again.cfg["loss_class_weights"] == textcat.cfg["loss_class_weights"]
    scores, _ = textcat.model.begin_update([eg.predicted for eg in egs])
    assert again.get_loss(egs, scores)[0] == textcat.get_loss(egs, scores)[0]
    # resumed training updates the loaded component without initializing it again
    loaded.update(egs, sgd=loaded.resume_training())
    # and from bytes as well
    again.from_bytes(textcat.to_bytes())
    assert again.loss.class_weights == textcat.loss.class_weights


def test_weighted_sum_parts_are_counted_by_path():
    block = {
        "@losses": "WeightedSum.v1",
        "losses": {
            "ce": BALANCED_CE,
            "l2": {"@losses": "L2Distance.v2"},
        },
    }
    _, textcat, _ = build("textcat", block, REDUCE)
    assert set(textcat.cfg["loss_class_weights"]) == {"ce"}
    assert textcat.loss.losses["ce"].class_weights == pytest.approx({"POS": 2 / 3, "NEG": 1.0, "MIXED": 2.0})


def test_without_balanced_nothing_is_stored():
    _, textcat, _ = build("textcat", {"@losses": "CategoricalCrossentropy.v4"}, REDUCE)
    assert "loss_class_weights" not in textcat.cfg


def test_pipe_loss_is_the_loss_that_runs():
    block = {"@losses": "CategoricalCrossentropy.v4", "normalize": False, "class_weights": {"NEG": 2.0}}
    _, textcat, egs = build("textcat", block, REDUCE)
    assert textcat.loss.names == list(textcat.labels)
    assert textcat.configured_loss.names is None
    scores, _ = textcat.model.begin_update([eg.predicted for eg in egs])
    value, grad = textcat.get_loss(egs, scores)
    truths, _ = textcat._examples_to_truth(egs)
    expected_grad, expected_value = textcat.loss(scores, truths)
    assert (grad == expected_grad).all()
    assert value == pytest.approx(expected_value / len(egs))  # reported per document (#9904)


@pytest.mark.parametrize("base", ["textcat", "textcat_multilabel"])
def test_reported_textcat_loss_does_not_depend_on_the_batch_size(base):
    """spaCy's test_issue9904, with the default loss."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe(f"{base}_with_loss")
    egs = examples(nlp, "textcat")
    nlp.initialize(lambda: egs)
    scores = textcat.model.predict([eg.predicted for eg in egs])
    loss = textcat.get_loss(egs, scores)[0]
    doubled = [eg for eg in egs for _ in range(2)]
    assert loss == pytest.approx(textcat.get_loss(doubled, scores.repeat(2, axis=0))[0])
