"""``upgrade``: config strings in, config strings out, and what the notes claim.

The expected outputs are written out in full: a change of layout, a lost
comment or a reordered key fails the comparison. The round-trip tests
resolve the upgraded loss blocks (and, with spaCy, build and train the whole
pipeline), and the numeric tests check the meaning the notes print
("gradient unchanged", "reported loss is now the cross-entropy").
"""
import inspect
from pathlib import Path

import numpy
import pytest
from thinc.api import Config, registry

from thinc_losses_plus.catalog import newer_versions
from thinc_losses_plus.entry_points import THINC_BUILTIN_LOSSES, loss_names
from thinc_losses_plus.upgrade import (
    RULES,
    UpgradeError,
    find_references,
    implied_truths,
    upgrade_config,
    upgrade_targets,
    verify_upgrade,
)

DATA = Path(__file__).parent / "data" / "upgrade"


def resolve_loss(text, section="loss"):
    config = Config().from_str(text)
    node = config
    for part in section.split("."):
        node = node[part]
    return registry.resolve({"loss": node})["loss"]


# Exact strings -----------------------------------------------------------

THINC_OLD = """\
# Training settings for our tagger (Thinc loop).

[training]
max_epochs = 10

[training.loss]
# labels arrive as strings
@losses = "CategoricalCrossentropy.v3"
normalize = false
names = [
    "NOUN",
    "VERB"
    ]

label_smoothing = 0.1
; end of loss

[model]
width = 64
"""

THINC_NEW = THINC_OLD.replace('"CategoricalCrossentropy.v3"', '"SparseCategoricalCrossentropy.v4"')


def test_thinc_config_with_comments_and_multiline_values():
    result = upgrade_config(THINC_OLD)
    assert result.text == THINC_NEW
    (change,) = result.changes
    assert (change.section, change.line, change.old, change.new) == (
        "training.loss",
        8,
        "CategoricalCrossentropy.v3",
        "SparseCategoricalCrossentropy.v4",
    )
    assert change.problem is None
    assert "implied by 'names'" in change.notes[0]
    assert "reported loss is now the cross-entropy" in change.notes[1]
    assert "gradient unchanged" in change.notes[1]
    assert verify_upgrade(result) == []
    loss = resolve_loss(result.text, "training.loss")
    assert type(loss).__name__ == "SparseCategoricalCrossentropy"
    assert loss.names == ["NOUN", "VERB"] and loss.label_smoothing == 0.1 and loss.normalize is False


def test_dense_sequence_hint_inserts_sparse_false_after_the_reference():
    old = '[loss]\n@losses = "SequenceCategoricalCrossentropy.v1"\nnormalize = false\n'
    result = upgrade_config(old, truths="dense")
    assert result.text == '[loss]\n@losses = "SequenceCategoricalCrossentropy.v4"\nsparse = false\nnormalize = false\n'
    assert result.changes[0].added == (("sparse", "false"),)
    assert verify_upgrade(result) == []
    assert resolve_loss(result.text).sparse is False


def test_sparse_sequence_adds_nothing():
    old = '[loss]\n@losses = "SequenceCategoricalCrossentropy.v2"\nneg_prefix = "!"\n'
    result = upgrade_config(old)
    assert result.text == '[loss]\n@losses = "SequenceCategoricalCrossentropy.v4"\nneg_prefix = "!"\n'
    assert resolve_loss(result.text).sparse is True


def test_crlf_line_endings_missing_final_newline_and_unquoted_names_are_kept():
    old = "[loss]\r\n@losses = SequenceCategoricalCrossentropy.v3\r\nnormalize = true"
    result = upgrade_config(old, truths="dense")
    assert result.text == "[loss]\r\n@losses = SequenceCategoricalCrossentropy.v4\r\nsparse = false\r\nnormalize = true"


@pytest.mark.parametrize(
    "old,new,note",
    [
        ("L2Distance.v1", "L2Distance.v2", "reported loss is now 0.5 * sum((g - t)^2) / n"),
        ("CosineDistance.v1", "CosineDistance.v2", "eps now bounds each norm"),
    ],
)
def test_fixed_upgrades(old, new, note):
    text = f'[a]\nx = 1\n\n[a.loss]\n@losses = "{old}"\nnormalize = false\n# done\n'
    result = upgrade_config(text)
    assert result.text == text.replace(old, new)
    assert result.changes[0].new == new and note in result.changes[0].notes[0]
    assert verify_upgrade(result) == []


def test_every_reference_in_order_and_other_registries_untouched():
    text = (
        "[model]\n@layers = \"CategoricalCrossentropy.v3\"\n\n"
        "[one]\n@losses = \"L2Distance.v1\"\n\n"
        "[two]\n@losses = \"SparseCategoricalCrossentropy.v4\"\n\n"
        "[three]\n@losses = \"CosineDistance.v1\"\nignore_zeros = true\n"
    )
    result = upgrade_config(text)
    assert [(c.section, c.new) for c in result.changes] == [("one", "L2Distance.v2"), ("three", "CosineDistance.v2")]
    assert result.text == text.replace('"L2Distance.v1"', '"L2Distance.v2"').replace(
        '"CosineDistance.v1"', '"CosineDistance.v2"'
    )


def test_nothing_to_upgrade_returns_the_text_unchanged():
    text = '[loss]\n@losses = "SparseCategoricalCrossentropy.v4"\n'
    result = upgrade_config(text)
    assert result.text == text and not result.upgradable and result.changes == []
    assert result.report() == "The @losses reference is current."
    assert upgrade_config(text + '[other]\n@losses = "Huber.v1"\n').report() == "All 2 @losses references are current."
    assert upgrade_config("[nlp]\nlang = \"en\"\n").report() == "No @losses reference in the config."


def test_references_to_unknown_names_are_warned_about_not_skipped():
    text = '[loss]\n@losses = "L2Distanse.v2"\n\n[var]\n@losses = ${vars.loss}\n\n[old]\n@losses = "L2Distance.v1"\n'
    result = upgrade_config(text)
    (unknown,) = result.unresolved  # a ${variable} is not a name to check
    assert (unknown.section, unknown.line, unknown.name, unknown.suggestions) == ("loss", 2, "L2Distanse.v2", ("L2Distance.v2",))
    assert result.text.startswith('[loss]\n@losses = "L2Distanse.v2"\n')  # left as it is
    report = result.report().splitlines()
    assert report[0] == "[old] (line 8): L2Distance.v1 -> L2Distance.v2"
    assert "WARNING: [loss] (line 2): no loss named 'L2Distanse.v2' in the registry; did you mean 'L2Distance.v2'? Left as it is." in report
    assert result.upgradable and result.current == 0  # a ${variable} is not counted


def test_upgrading_twice_changes_nothing_more():
    once = upgrade_config(THINC_OLD).text
    again = upgrade_config(once)
    assert again.text == once and not again.upgradable


# Which v4 a categorical reference becomes ----------------------------------


@pytest.mark.parametrize(
    "args,expected",
    [
        ('names = ["A", "B"]', "SparseCategoricalCrossentropy.v4"),
        ('neg_prefix = "!"', "SparseCategoricalCrossentropy.v4"),
        ('missing_value = "?"', "SparseCategoricalCrossentropy.v4"),
        ("label_smoothing = 0.2", "SparseCategoricalCrossentropy.v4"),
    ],
)
def test_arguments_that_imply_sparse_labels(args, expected):
    text = f'[loss]\n@losses = "CategoricalCrossentropy.v3"\n{args}\n'
    for hint in (None, "sparse"):
        result = upgrade_config(text, truths=hint)
        assert result.changes[0].new == expected
        assert verify_upgrade(result) == []
    # a hint that contradicts the arguments is an error for that reference, never silently overridden
    result = upgrade_config(text, truths="dense")
    (change,) = result.problems
    assert change.new is None and result.text == text
    assert change.problem.startswith("--truths dense contradicts the block, which gets sparse labels (")


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_ambiguous_truths_need_a_hint(version):
    text = f'[loss]\n@losses = "CategoricalCrossentropy.{version}"\nmissing_value = -1\nlabel_smoothing = 0.0\n'
    if version != "v3":
        text = text.replace("label_smoothing = 0.0\n", "")
    result = upgrade_config(text)
    assert result.text == text  # left as it was
    (change,) = result.problems
    assert "--truths" in change.problem and change.new is None
    assert result.upgradable  # --check still reports it
    dense = upgrade_config(text, truths="dense")
    assert dense.changes[0].new == "CategoricalCrossentropy.v4"
    assert resolve_loss(dense.text).missing_value == -1
    sparse = upgrade_config(text, truths="sparse")
    assert sparse.changes[0].new == "SparseCategoricalCrossentropy.v4"
    assert verify_upgrade(dense) == [] and verify_upgrade(sparse) == []


def test_implied_truths():
    assert implied_truths({}) == (None, [])
    assert implied_truths({"names": []}) == (None, [])  # names=[] means no names
    assert implied_truths({"label_smoothing": 0.0, "neg_prefix": None}) == (None, [])
    kind, reasons = implied_truths({"missing_value": "O", "neg_prefix": "!"})
    assert kind == "sparse" and len(reasons) == 2
    assert implied_truths({}, component="tagger_with_loss")[0] == "sparse"


def test_upgrade_targets():
    assert upgrade_targets("L2Distance.v1") == ["L2Distance.v2"]
    assert upgrade_targets("SequenceCategoricalCrossentropy.v3") == ["SequenceCategoricalCrossentropy.v4"]
    assert upgrade_targets("Huber.v1") == []


# Refusals --------------------------------------------------------------------


def test_result_that_would_not_resolve_is_reported():
    # Thinc's v3 accepts duplicate names; the v4 calculators refuse them.
    result = upgrade_config('[loss]\n@losses = "CategoricalCrossentropy.v3"\nnames = ["A", "A"]\n')
    assert result.changes[0].new == "SparseCategoricalCrossentropy.v4"
    (failure,) = verify_upgrade(result)
    assert "[loss] SparseCategoricalCrossentropy.v4 would not resolve" in failure
    assert "duplicate" in failure


def test_target_that_is_not_registered_is_a_problem():
    result = upgrade_config('[loss]\n@losses = "L2Distance.v1"\n', known={"L2Distance.v1"})
    assert result.problems and "L2Distance.v2 is not registered" in result.problems[0].problem
    assert result.text == '[loss]\n@losses = "L2Distance.v1"\n'


def test_block_that_already_sets_an_added_argument_is_a_problem():
    result = upgrade_config('[loss]\n@losses = "SequenceCategoricalCrossentropy.v3"\nsparse = false\n', truths="dense")
    assert "already sets ['sparse']" in result.problems[0].problem


def test_unreadable_config_and_bad_options():
    with pytest.raises(UpgradeError, match="Cannot read the config"):
        upgrade_config('[loss]\n@losses = "L2Distance.v1"\n[loss]\nx = 1\n')
    with pytest.raises(UpgradeError, match="--truths"):
        upgrade_config("", truths="soft")
    with pytest.raises(UpgradeError, match="--to"):
        upgrade_config("", to="v3")


def test_find_references_skips_comments_and_continuation_lines():
    text = '[a]\n# @losses = "L2Distance.v1"\nx = [\n  1]\n[b]\n@losses = "L2Distance.v1"\n'
    assert [(r.section, r.line) for r in find_references(text)] == [("b", 5)]


# spaCy training config -----------------------------------------------------


def test_spacy_training_config():
    old = (DATA / "spacy_tagger_textcat.cfg").read_text(encoding="utf8")
    expected = (DATA / "spacy_tagger_textcat.upgraded.cfg").read_text(encoding="utf8")
    result = upgrade_config(old)  # no --truths: the components imply labels
    assert result.text == expected
    assert [(c.section, c.old, c.new) for c in result.changes] == [
        ("components.tagger.loss", "SequenceCategoricalCrossentropy.v3", "SequenceCategoricalCrossentropy.v4"),
        ("components.textcat.loss", "CategoricalCrossentropy.v2", "SparseCategoricalCrossentropy.v4"),
    ]
    assert "tagger_with_loss" in result.changes[0].notes[0]
    # the loss blocks resolve alone (no spaCy needed), ${...} interpolated
    assert verify_upgrade(result) == []
    tagger_loss = resolve_loss(expected, "components.tagger.loss")
    assert tagger_loss.label_smoothing == 0.05 and tagger_loss.normalize is False


def test_spacy_round_trip_trains_with_the_upgraded_config():
    spacy = pytest.importorskip("spacy")  # the Thinc-alone CI job has no spaCy
    from spacy.training import Example

    text = (DATA / "spacy_tagger_textcat.upgraded.cfg").read_text(encoding="utf8")
    nlp = spacy.util.load_model_from_config(Config().from_str(text), auto_fill=True, validate=True)
    words = ["I", "like", "green", "eggs"]
    examples = [
        Example.from_dict(nlp.make_doc(" ".join(words)), {"tags": ["PRP", "VBP", "JJ", "NNS"], "cats": {"POS": 1.0, "NEG": 0.0}}),
        Example.from_dict(nlp.make_doc("eggs like me"), {"tags": ["NNS", "VBP", "PRP"], "cats": {"POS": 0.0, "NEG": 1.0}}),
    ]
    optimizer = nlp.initialize(lambda: examples)
    losses = {}
    nlp.update(examples, sgd=optimizer, losses=losses)
    assert set(losses) >= {"tagger", "textcat"}
    assert all(numpy.isfinite(v) for v in losses.values())
    assert type(nlp.get_pipe("textcat").loss).__name__ == "SparseCategoricalCrossentropy"


# What the notes claim ------------------------------------------------------


def _softmax(x):
    e = numpy.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype("float32")


def test_categorical_gradient_unchanged_and_loss_now_cross_entropy():
    rng = numpy.random.default_rng(0)
    guesses = _softmax(rng.normal(size=(6, 4)))
    labels = ["A", "B", "C", "D", "!B", "A"]
    old_text = '[loss]\n@losses = "CategoricalCrossentropy.v3"\nnames = ["A", "B", "C", "D"]\nneg_prefix = "!"\n'
    new_text = upgrade_config(old_text).text
    old, new = resolve_loss(old_text), resolve_loss(new_text)
    old_grad, old_loss = old(guesses, list(labels))
    new_grad, new_loss = new(guesses, list(labels))
    numpy.testing.assert_allclose(new_grad, old_grad, rtol=1e-6, atol=1e-7)
    assert old_loss == pytest.approx(float((old_grad**2).sum()), rel=1e-5)
    rows = [0, 1, 2, 3, 5]
    gold = [0, 1, 2, 3, 0]
    expected = -numpy.log(guesses[rows, gold].astype("float64") + 1e-9).sum() / 6
    assert new_loss == pytest.approx(expected, rel=1e-5)


def test_dense_categorical_gradient_unchanged():
    rng = numpy.random.default_rng(1)
    guesses = _softmax(rng.normal(size=(5, 3)))
    truths = numpy.eye(3, dtype="float32")[[0, 2, 1, 1, 0]]
    old_text = '[loss]\n@losses = "CategoricalCrossentropy.v1"\nnormalize = false\n'
    new_text = upgrade_config(old_text, truths="dense").text
    old_grad, _ = resolve_loss(old_text)(guesses, truths)
    new_grad, new_loss = resolve_loss(new_text)(guesses, truths)
    numpy.testing.assert_allclose(new_grad, old_grad, rtol=1e-6, atol=1e-7)
    assert new_loss == pytest.approx(-numpy.log((guesses * truths).sum(axis=1) + 1e-9).sum(), rel=1e-5)


def test_sequence_gradient_unchanged_and_loss_now_summed_cross_entropy():
    rng = numpy.random.default_rng(2)
    guesses = [_softmax(rng.normal(size=(n, 3))) for n in (2, 4)]
    truths = [[0, 2], [1, 1, 0, 2]]
    old_text = '[loss]\n@losses = "SequenceCategoricalCrossentropy.v3"\nnames = ["a", "b", "c"]\n'
    new_text = upgrade_config(old_text).text
    as_names = [["abc"[i] for i in seq] for seq in truths]
    old_grads, old_loss = resolve_loss(old_text)(guesses, as_names)
    new_grads, new_loss = resolve_loss(new_text)(guesses, as_names)
    for a, b in zip(old_grads, new_grads):
        numpy.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    expected = sum(-numpy.log(g[numpy.arange(len(t)), t] + 1e-9).sum() for g, t in zip(guesses, truths))
    assert new_loss == pytest.approx(expected, rel=1e-5)  # not divided by the 2 sequences


@pytest.mark.parametrize("normalize", [True, False])
def test_l2_gradient_unchanged_and_loss_now_half_squared_error(normalize):
    rng = numpy.random.default_rng(3)
    g, t = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    old_text = f'[loss]\n@losses = "L2Distance.v1"\nnormalize = {str(normalize).lower()}\n'
    old_grad, old_loss = resolve_loss(old_text)(g, t)
    new_grad, new_loss = resolve_loss(upgrade_config(old_text).text)(g, t)
    n = 4 if normalize else 1
    numpy.testing.assert_allclose(new_grad, old_grad, rtol=1e-6)
    assert old_loss == pytest.approx(float((((g - t) / n) ** 2).sum()), rel=1e-5)
    assert new_loss == pytest.approx(float(0.5 * ((g - t) ** 2).sum() / n), rel=1e-5)


def test_cosine_close_to_v1_and_ignore_zeros_rows_leave_n():
    rng = numpy.random.default_rng(4)
    g, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    t[3] = 0.0
    old_text = '[loss]\n@losses = "CosineDistance.v1"\nignore_zeros = true\n'
    old_grad, old_loss = resolve_loss(old_text)(g, t)
    new_grad, new_loss = resolve_loss(upgrade_config(old_text).text)(g, t)
    # v1 divides by all 4 rows, v2 by the 3 rows with a non-zero truth
    numpy.testing.assert_allclose(new_grad * 3, old_grad * 4, rtol=1e-5, atol=1e-7)
    assert new_loss * 3 == pytest.approx(old_loss * 4, rel=1e-5)


# Invariants over the rules ---------------------------------------------------


@pytest.mark.parametrize("old", sorted(RULES))
def test_targets_accept_the_old_arguments_with_the_same_defaults(old):
    old_params = inspect.signature(registry.losses.get(old)).parameters
    for new in upgrade_targets(old):
        new_params = inspect.signature(registry.losses.get(new)).parameters
        for name, param in old_params.items():
            if new == "CategoricalCrossentropy.v4" and name == "neg_prefix":
                continue  # implies sparse labels: never upgraded to the dense v4
            assert name in new_params, f"{new} lacks {old}'s argument {name!r}"
            assert new_params[name].default == param.default, (old, new, name)


def test_rules_cover_exactly_thincs_superseded_names():
    assert set(RULES) == set(THINC_BUILTIN_LOSSES)


def test_every_superseded_name_of_ours_has_a_rule():
    # A vN+1 must come with a rule (and notes) for configs pinned to vN.
    names = loss_names()
    missing = [n for n in names if newer_versions(n, names) and n not in RULES]
    assert missing == [], f"add upgrade rules in thinc_losses_plus/upgrade.py for {missing}"


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parent.parent / "configs" / "spacy").glob("*.cfg")), ids=lambda p: p.name
)
def test_shipped_spacy_configs_are_current(path):
    # real spaCy training configs: upgrade reads them and finds nothing to do
    text = path.read_text(encoding="utf8")
    result = upgrade_config(text)
    assert not result.upgradable, result.report()
    assert result.text == text


def test_added_argument_on_a_last_line_without_newline():
    old = '[loss]\n@losses = "SequenceCategoricalCrossentropy.v3"'
    result = upgrade_config(old, truths="dense")
    assert result.text == '[loss]\n@losses = "SequenceCategoricalCrossentropy.v4"\nsparse = false'
    assert upgrade_config('[loss]\r\n@losses = "L2Distance.v1"').text == '[loss]\r\n@losses = "L2Distance.v2"'
