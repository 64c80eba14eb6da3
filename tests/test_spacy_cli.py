"""``python -m spacy losses ...``: the same commands inside spaCy's CLI (spaCy only).

spaCy's CLI loads the ``spacy_cli`` entry points when it starts; the
package's entry point adds a ``losses`` typer group over the plain functions
of :mod:`thinc_losses_plus.cli`. The CI job without spaCy skips this module.
"""
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

spacy = pytest.importorskip("spacy")

from typer.testing import CliRunner  # noqa: E402  (spaCy brings typer)

from thinc_losses_plus import cli, examples  # noqa: E402
from thinc_losses_plus.catalog import describe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "configs" / "spacy" / "corpus"


@pytest.fixture(scope="module")
def app():
    from spacy.cli._util import app, registry

    registry.cli.get_all()  # what spacy.cli.setup_cli does: loads the spacy_cli entry points
    return app


def invoke(app, *args):
    result = CliRunner().invoke(app, ["losses", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.output


def test_the_entry_point_is_declared():
    (ep,) = [ep for ep in entry_points(group="spacy_cli") if ep.value.startswith("thinc_losses_plus.")]
    assert ep.value == "thinc_losses_plus.spacy_cli:losses_cli"


def test_spacy_cli_runs_the_losses_group():
    env = dict(os.environ)
    help_text = subprocess.run(
        [sys.executable, "-m", "spacy", "losses", "--help"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert help_text.returncode == 0, help_text.stderr
    for command in ("list", "info", "example", "upgrade"):
        assert f" {command} " in help_text.stdout, command
    info = subprocess.run(
        [sys.executable, "-m", "spacy", "losses", "info", "L2Distance.v2"], capture_output=True, text=True, cwd=ROOT
    )
    assert info.returncode == 0, info.stderr
    assert info.stdout == cli.format_info(describe("L2Distance.v2")) + "\n"


def test_list(app):
    code, out = invoke(app, "list")
    assert code == 0 and "SparseCategoricalCrossentropy.v4" in out and "no name is shadowed" in out


def test_info_and_its_suggestions(app):
    code, out = invoke(app, "info", "Huber.v1")
    assert code == 0 and cli.format_info(describe("Huber.v1")) in out
    code, out = invoke(app, "info", "huber")
    assert code == 2 and "Did you mean 'Huber.v1'?" in out


def test_example(app):
    code, out = invoke(app, "example", "textcat_focal")
    assert code == 0 and examples.find_example("textcat_focal").text().rstrip("\n") in out
    code, out = invoke(app, "example")
    assert code == 0 and "textcat_class_weights" in out
    assert invoke(app, "example", "nope")[0] == 2


def test_upgrade(app, tmp_path):
    path = tmp_path / "config.cfg"
    path.write_text('[loss]\n@losses = "L2Distance.v1"\n')
    code, out = invoke(app, "upgrade", path, "--check")
    assert code == 1 and "L2Distance.v1 -> L2Distance.v2" in out
    assert invoke(app, "upgrade", path, "--check", "--write")[0] == 2
    assert invoke(app, "upgrade", path, "--truths", "soft")[0] == 2
    code, out = invoke(app, "upgrade", path, "--write")
    assert code == 0 and path.read_text() == '[loss]\n@losses = "L2Distance.v2"\n'


@pytest.mark.slow
def test_an_example_trains_from_any_directory(tmp_path):
    # thinc-losses example textcat_class_weights > config.cfg && python -m spacy train config.cfg --paths.train ...
    work = tmp_path / "elsewhere"
    work.mkdir()
    for name in ("train.spacy", "dev.spacy"):
        shutil.copy(CORPUS / name, work / name)
    with open(work / "config.cfg", "w", encoding="utf8") as config:
        done = subprocess.run(
            [sys.executable, "-m", "thinc_losses_plus", "example", "textcat_class_weights"],
            stdout=config, stderr=subprocess.PIPE, text=True, cwd=work,
        )
    assert done.returncode == 0, done.stderr
    train = subprocess.run(
        [sys.executable, "-m", "spacy", "train", "config.cfg", "--paths.train", "train.spacy",
         "--paths.dev", "dev.spacy", "--output", "out", "--training.max_steps", "2", "--training.eval_frequency", "1"],
        capture_output=True, text=True, cwd=work,
    )
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert (work / "out" / "model-last" / "config.cfg").exists()
