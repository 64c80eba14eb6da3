"""The first-contact path: ``spacy init config``, change the factory, add a loss block.

``python -m spacy init config c.cfg --pipeline tagger`` writes
``label_smoothing = 0.05`` on the tagger. Switching to ``tagger_with_loss``
and adding a loss block with ``label_smoothing = 0.1`` builds: the loss
block's value is used, and a one-line warning names the key to delete from
the component's block. The same path works for every component.
"""

import subprocess
import sys
import warnings

import pytest

spacy = pytest.importorskip("spacy")

from spacy.cli.init_config import init_config  # noqa: E402
from thinc.api import Config  # noqa: E402

# built-in -> a loss block a user would add after switching the factory
LOSS_BLOCKS = {
    "tagger": {"@losses": "SequenceCategoricalCrossentropy.v4", "label_smoothing": 0.1},
    "morphologizer": {"@losses": "SequenceCategoricalCrossentropy.v4", "label_smoothing": 0.1},
    "senter": {"@losses": "CategoricalFocalCrossentropy.v1", "gamma": 2.0},
    "textcat": {"@losses": "CategoricalCrossentropy.v4", "class_weights": "balanced"},
    "textcat_multilabel": {"@losses": "BinaryCrossentropy.v1", "label_smoothing": 0.1},
    "spancat": {"@losses": "BinaryFocalCrossentropy.v1", "gamma": 2.0},
    "trainable_lemmatizer": {"@losses": "SequenceCategoricalCrossentropy.v4", "label_smoothing": 0.1},
    "span_finder": {"@losses": "BinaryCrossentropy.v1", "pos_weight": 2.0},
    "entity_linker": {"@losses": "CosineDistance.v2"},
}
# what the warning says to delete, where init config sets a value the loss block replaces
TO_DELETE = {"tagger": "label_smoothing", "morphologizer": "label_smoothing"}


def switched(config_text: str, component: str, block: dict) -> str:
    """The user's edit: the factory renamed, a loss block appended."""
    old = f'factory = "{component}"'
    assert old in config_text
    text = config_text.replace(old, f'factory = "{component}_with_loss"', 1)
    lines = [f"\n[components.{component}.loss]"]
    for key, value in block.items():
        lines.append(f"{key} = {value!r}".replace("'", '"') if isinstance(value, str) else f"{key} = {value}")
    return text + "\n".join(lines) + "\n"


def build(text: str):
    return spacy.util.load_model_from_config(Config().from_str(text), auto_fill=True, validate=True)


@pytest.mark.parametrize("component", sorted(LOSS_BLOCKS))
def test_init_config_then_switch_the_factory_and_add_a_loss_block(component):
    config = init_config(lang="en", pipeline=[component], optimize="efficiency", gpu=False)
    text = switched(config.to_str(), component, LOSS_BLOCKS[component])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp = build(text)
    ours = [str(w.message) for w in caught if "delete" in str(w.message)]
    pipe = nlp.get_pipe(component)
    assert type(pipe).__name__.endswith("WithLoss")
    for key, value in LOSS_BLOCKS[component].items():
        if key != "@losses":
            assert getattr(pipe.loss, key) == value, key
    if component in TO_DELETE:
        key = TO_DELETE[component]
        assert len(ours) == 1 and "\n" not in ours[0]
        assert f"delete '{key}' from [components.{component}]" in ours[0]
    else:
        assert ours == []


def test_the_cli_output_with_a_loss_block_builds(tmp_path):
    path = tmp_path / "c.cfg"
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "init", "config", str(path), "--pipeline", "tagger"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text(encoding="utf8")
    assert "label_smoothing = 0.05" in text
    block = {"@losses": "SequenceCategoricalCrossentropy.v4", "label_smoothing": 0.1}
    with pytest.warns(UserWarning, match=r"delete 'label_smoothing' from \[components.tagger\]"):
        nlp = build(switched(text, "tagger", block))
    assert nlp.get_pipe("tagger").loss.label_smoothing == 0.1
    # without a loss block, the component's own 0.05 reaches the default loss (the built-in's training)
    plain = build(text.replace('factory = "tagger"', 'factory = "tagger_with_loss"'))
    assert plain.get_pipe("tagger").loss.label_smoothing == 0.05
