"""The command line: a thin layer, tested through ``main`` and a few subprocesses.

The same plain functions run as ``thinc-losses``, ``python -m
thinc_losses_plus`` and, with spaCy installed, ``python -m spacy losses``
(tests/test_spacy_cli.py).
"""
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from thinc.api import Config, registry

import thinc_losses_plus
from thinc_losses_plus import cli, examples
from thinc_losses_plus.catalog import Listing, build_listing, config_snippet, describe, list_losses
from thinc_losses_plus.entry_points import DISTRIBUTION, THINC_BUILTIN_LOSSES, loss_entry_points, loss_names

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "upgrade"
OLD = '# pinned\n[loss]\n@losses = "L2Distance.v1"\n\nnormalize = false\n'
NEW = '# pinned\n[loss]\n@losses = "L2Distance.v2"\n\nnormalize = false\n'
MARKUP = re.compile(r"``|:(?:class|func|meth|mod|attr):`|\*\*|docstring")


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --version -------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    out, _ = capsys.readouterr()
    assert done.value.code == 0
    assert out.startswith(f"thinc-losses-plus {thinc_losses_plus.__version__} (thinc ")


# list ------------------------------------------------------------------------


def test_list_shows_every_name_with_its_provider(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line.strip() and ".v" in line.split()[0]}
    for name in loss_names():
        assert rows[name] == DISTRIBUTION
    for name in THINC_BUILTIN_LOSSES:
        assert rows[name] == "thinc"
    assert "no name is shadowed" in out
    assert "WARNING" not in out
    assert "upgrade: CategoricalCrossentropy.v4 or SparseCategoricalCrossentropy.v4" in out


def test_list_losses_agrees_with_the_registry():
    listed = {row.name for row in list_losses()}
    assert listed == set(registry.losses.get_all())
    assert all(not row.shadows for row in list_losses())


def test_shadowing_is_detected_and_warned():
    rows = build_listing(
        [("L2Distance.v1", "bad-plugin"), ("Huber.v1", "thinc-losses-plus"), ("Huber.v1", "other-plugin")],
        {"L2Distance.v1": "thinc", "CosineDistance.v1": "thinc"},
    )
    by_name = {row.name: row for row in rows}
    assert by_name["L2Distance.v1"] == Listing("L2Distance.v1", "bad-plugin", ("thinc",))
    assert by_name["Huber.v1"].shadows == ("other-plugin",)
    assert by_name["CosineDistance.v1"].shadows == ()
    text = cli.format_listing(rows)
    assert "WARNING: shadows L2Distance.v1 of thinc: configs pinned to it now get bad-plugin's" in text
    assert "2 WARNING(S)" in text


# info ------------------------------------------------------------------------


def info_fields(out):
    """``{"Gradient": "...", ...}`` from the ``Label: value`` lines after the summary."""
    fields, current = {}, None
    for line in out.split("\n\n")[1].splitlines():
        match = re.match(r"^([A-Z][\w ]*):\s+(.*)$", line)
        if match:
            current = match.group(1)
            fields[current] = match.group(2)
        else:
            fields[current] += " " + line.strip()
    return fields


def argument_rows(out):
    """The argument table: the header and one line per argument (descriptions skipped)."""
    table = out.split("\nArguments:\n")[1].split("\n\n")[0].splitlines()
    return [line for line in table if not line.startswith("      ")]


@pytest.mark.parametrize("name", loss_names())
def test_info_for_every_registered_name(name, capsys):
    code, out, _ = run(["info", name], capsys)
    assert code == 0
    info = describe(name)
    assert out.startswith(f"{name}\n")
    fields = info_fields(out)
    assert fields["Provided by"] == DISTRIBUTION and fields["Factory"] == info.factory
    assert "respect to" in fields["Gradient"]
    header, *rows = argument_rows(out)
    assert [row.split()[0] for row in rows] == [arg.name for arg in info.arguments]
    # the type and default columns line up
    assert {row.index(arg.type, len(arg.name) + 2) for row, arg in zip(rows, info.arguments)} == {header.index("type")}
    for row, arg in zip(rows, info.arguments):
        default = "required" if arg.required else cli.catalog.config_value(arg.default)
        assert row[header.index("default"):].rstrip() == default, arg.name
    snippet = out.split("\nConfig (every argument at its default):\n")[1].strip()
    assert snippet == config_snippet(info)
    if any(arg.required for arg in info.arguments):
        assert "# " in snippet and "Config example:" in out  # the example fills what has no default
        snippet = out.split("\nConfig example:\n")[1].split("\n\nConfig (")[0]
    loss = registry.resolve(Config().from_str(snippet))["loss"]
    assert type(loss) is info.calculator


@pytest.mark.parametrize("name", loss_names() + list(THINC_BUILTIN_LOSSES))
def test_info_is_plain_text_and_says_the_gradient_once(name, capsys):
    _, out, _ = run(["info", name], capsys)
    prose = out.split("\nConfig")[0]  # config snippets are config syntax, not prose
    assert not MARKUP.search(prose), MARKUP.search(prose).group(0)
    assert not re.search(r"\w::", prose)  # RST literal-block markers
    gradient = info_fields(out)["Gradient"]
    opening = " ".join(gradient.split()[:8])
    assert " ".join(out.split()).count(opening) == 1, f"the gradient sentence is repeated: {opening!r}"


def test_info_for_a_thinc_builtin_says_what_upgrading_changes(capsys):
    code, out, _ = run(["info", "CategoricalCrossentropy.v2"], capsys)
    assert code == 0
    assert info_fields(out)["Provided by"] == "thinc"
    assert "with respect to the logits" in out
    assert "neg_prefix" in out and "label_smoothing" not in out  # v2 has no label_smoothing
    assert "Newer: CategoricalCrossentropy.v4 or SparseCategoricalCrossentropy.v4." in out


@pytest.mark.parametrize(
    "typed,meant",
    [
        ("SparseCategoricalCrossentropy", "SparseCategoricalCrossentropy.v4"),  # no version
        ("sparsecategoricalcrossentropy.v4", "SparseCategoricalCrossentropy.v4"),  # case
        ("SparseCategoricalCrossentropy.v3", "SparseCategoricalCrossentropy.v4"),  # no such version
        ("L2Distanse.v2", "L2Distance.v2"),  # spelling
        ("categoricalcrossentropy.v3", "CategoricalCrossentropy.v3"),  # a Thinc name
    ],
)
def test_info_suggests_near_miss_names(typed, meant, capsys):
    code, out, err = run(["info", typed], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"No loss named {typed!r} in the registry. Did you mean {meant!r}")


def test_info_unknown_name(capsys):
    code, _, err = run(["info", "Nope.v1"], capsys)
    assert code == 2 and "No loss named 'Nope.v1' in the registry." in err and "Did you mean" not in err


# example -----------------------------------------------------------------------


def test_every_shipped_config_is_an_example():
    found = {(e.kind, e.path.relative_to(ROOT).as_posix()) for e in examples.list_examples()}
    shipped = {("loss", p.relative_to(ROOT).as_posix()) for p in (ROOT / "configs" / "losses").glob("*.cfg")}
    shipped |= {("spacy", p.relative_to(ROOT).as_posix()) for p in (ROOT / "configs" / "spacy").glob("*.cfg")}
    assert found == shipped
    assert {e.name for e in examples.list_examples() if e.kind == "loss"} <= set(loss_names())  # one each: test_configs


@pytest.mark.parametrize("example", examples.list_examples(), ids=lambda e: e.name)
def test_example_prints_the_shipped_config(example, capsys):
    code, out, err = run(["example", example.name], capsys)
    assert code == 0
    assert out.rstrip("\n") == example.text().rstrip("\n") and out.endswith("\n")
    if example.kind == "spacy":
        assert "--paths.train" in err  # a hint on stderr, so `> config.cfg` gets the config alone
        assert Config().from_str(out, interpolate=False)["paths"]
    else:
        assert err == ""
        assert type(registry.resolve(Config().from_str(out))["loss"]).__name__ == describe(example.name).calculator.__name__


def test_example_accepts_a_file_name(capsys):
    assert run(["example", "textcat_focal.cfg"], capsys)[1] == examples.find_example("textcat_focal").text().rstrip("\n") + "\n"


def test_example_of_a_name_without_a_shipped_config(capsys):
    code, out, _ = run(["example", "CategoricalCrossentropy.v3"], capsys)
    assert code == 0 and out.startswith("# CategoricalCrossentropy.v3 (thinc): every argument at its default")
    loss = registry.resolve(Config().from_str(out))["loss"]
    assert type(loss).__module__ == "thinc.loss"


def test_example_without_a_name_lists_them(capsys):
    code, out, _ = run(["example"], capsys)
    assert code == 0
    for example in examples.list_examples():
        assert re.search(rf"^  {re.escape(example.name)}  ", out, flags=re.M), example.name
    assert "python -m spacy train CONFIG --paths.train" in out


@pytest.mark.parametrize(
    "typed,meant", [("textcat_clas_weights", "textcat_class_weights"), ("Huber", "Huber.v1"), ("huber.v1", "Huber.v1")]
)
def test_example_suggests_near_miss_names(typed, meant, capsys):
    code, out, err = run(["example", typed], capsys)
    assert code == 2 and out == ""
    assert f"Did you mean {meant!r}" in err


def test_examples_are_read_from_the_package_when_installed(tmp_path):
    # a wheel carries them in thinc_losses_plus/configs/ (tests/test_packaging.py builds one)
    for group in ("losses", "spacy"):
        (tmp_path / group).mkdir()
    (tmp_path / "spacy" / "mine.cfg").write_text("# Mine.\n[paths]\ntrain = null\n")
    (found,) = examples.list_examples(tmp_path)
    assert (found.name, found.kind, found.summary) == ("mine", "spacy", "Mine.")
    assert examples.examples_root() == ROOT / "configs"  # a checkout: configs/ itself


# upgrade ---------------------------------------------------------------------


def test_upgrade_prints_the_new_config_and_the_notes(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    path.write_text(OLD)
    code, out, err = run(["upgrade", str(path)], capsys)
    assert code == 0 and out == NEW
    assert "[loss] (line 3): L2Distance.v1 -> L2Distance.v2" in err
    assert "gradient unchanged" in err
    assert path.read_text() == OLD  # not written without --write


def test_upgrade_check(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    path.write_text(OLD)
    code, out, _ = run(["upgrade", str(path), "--check"], capsys)
    assert code == 1 and out == "" and path.read_text() == OLD
    path.write_text(NEW)
    code, _, err = run(["upgrade", str(path), "--check"], capsys)
    assert code == 0 and err == f"{path}:\nThe @losses reference is current.\n"
    path.write_text(NEW + '\n[other]\n@losses = "Huber.v1"\n')
    code, _, err = run(["upgrade", str(path), "--check"], capsys)
    assert code == 0 and "All 2 @losses references are current." in err
    path.write_text("[nlp]\nlang = \"en\"\n")
    assert run(["upgrade", str(path), "--check"], capsys)[2].endswith("No @losses reference in the config.\n")


def test_upgrade_warns_about_references_that_resolve_to_nothing(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    path.write_text(OLD + '\n[typo]\n@losses = "Hubber.v1"\n\n[plugin]\n@losses = "NotInstalled.v1"\n')
    code, out, err = run(["upgrade", str(path)], capsys)
    assert code == 0 and out.count('"L2Distance.v2"') == 1
    assert "WARNING: [typo] (line 8): no loss named 'Hubber.v1' in the registry; did you mean 'Huber.v1'? Left as it is." in err
    assert "WARNING: [plugin] (line 11): no loss named 'NotInstalled.v1' in the registry (is the package" in err
    assert '@losses = "Hubber.v1"' in out  # left as it is


def test_upgrade_check_counts_references_that_need_a_hint(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    path.write_text('[loss]\n@losses = "CategoricalCrossentropy.v3"\n')
    assert run(["upgrade", str(path), "--check"], capsys)[0] == 1


def test_upgrade_write(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    path.write_text(OLD)
    code, out, err = run(["upgrade", str(path), "--write", "--to", "latest"], capsys)
    assert code == 0 and out == "" and path.read_text() == NEW
    assert f"Wrote {path}" in err


def test_upgrade_refuses_to_write_what_would_not_resolve(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    old = '[loss]\n@losses = "CategoricalCrossentropy.v3"\nnames = ["A", "A"]\n'
    path.write_text(old)
    code, out, err = run(["upgrade", str(path), "--write"], capsys)
    assert code == 2 and out == ""
    assert "would not resolve" in err and "Nothing written" in err
    assert path.read_text() == old


def test_upgrade_refuses_label_smoothing_that_the_names_rule_out(tmp_path, capsys):
    # Thinc's v3 only refuses it at its first call; v4 at construction, since names fix C
    path = tmp_path / "a.cfg"
    old = '[loss]\n@losses = "CategoricalCrossentropy.v3"\nnames = ["A", "B"]\nlabel_smoothing = 0.5\n'
    path.write_text(old)
    code, out, err = run(["upgrade", str(path), "--write"], capsys)
    assert code == 2 and out == "" and path.read_text() == old
    assert "'label_smoothing' must be < (C-1)/C = 0.5 for C = 2 classes" in err


def test_upgrade_refuses_to_guess_the_truths(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    old = '[loss]\n@losses = "CategoricalCrossentropy.v3"\n'
    path.write_text(old)
    code, out, err = run(["upgrade", str(path), "--write"], capsys)
    assert code == 2 and "pass --truths dense or --truths sparse" in err and path.read_text() == old
    assert "truths=" not in err  # CLI wording, not Python's
    code, _, _ = run(["upgrade", str(path), "--write", "--truths", "dense"], capsys)
    assert code == 0 and path.read_text() == '[loss]\n@losses = "CategoricalCrossentropy.v4"\n'


def test_upgrade_refuses_a_hint_that_contradicts_the_arguments(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    old = '[loss]\n@losses = "CategoricalCrossentropy.v3"\nnames = ["A", "B"]\n'
    path.write_text(old)
    code, out, err = run(["upgrade", str(path), "--write", "--truths", "dense"], capsys)
    assert code == 2 and out == "" and path.read_text() == old
    assert "--truths dense contradicts the block, which gets sparse labels ('names')" in err
    assert run(["upgrade", str(path), "--write", "--truths", "sparse"], capsys)[0] == 0  # agrees: fine
    assert '"SparseCategoricalCrossentropy.v4"' in path.read_text()


def test_upgrade_spacy_config_in_place(tmp_path, capsys):
    path = tmp_path / "config.cfg"
    path.write_text((DATA / "spacy_tagger_textcat.cfg").read_text())
    code, _, err = run(["upgrade", str(path), "--write"], capsys)
    assert code == 0, err
    assert path.read_text() == (DATA / "spacy_tagger_textcat.upgraded.cfg").read_text()


def test_upgrade_errors(tmp_path, capsys):
    code, _, err = run(["upgrade", str(tmp_path / "missing.cfg")], capsys)
    assert code == 2 and "Cannot upgrade" in err
    bad = tmp_path / "bad.cfg"
    bad.write_text('[loss]\n@losses = "L2Distance.v1"\n[loss]\n')
    code, _, err = run(["upgrade", str(bad)], capsys)
    assert code == 2 and "Cannot read the config" in err
    with pytest.raises(SystemExit):
        cli.main(["upgrade", str(bad), "--check", "--write"])  # mutually exclusive
    with pytest.raises(SystemExit):
        cli.main(["upgrade", str(bad), "--to", "v2"])
    assert cli.run_upgrade(bad, check=True, write=True, stderr=io.StringIO()) == 2  # the plain function checks too


def test_run_upgrade_is_plain_function(tmp_path):
    path = tmp_path / "a.cfg"
    path.write_text(OLD)
    out, err = io.StringIO(), io.StringIO()
    assert cli.run_upgrade(path, stdout=out, stderr=err) == 0
    assert out.getvalue() == NEW


# Processes: the console script, python -m, a reader that stops early ----------------


def test_python_dash_m_and_exit_codes(tmp_path):
    path = tmp_path / "a.cfg"
    path.write_text(OLD)
    proc = subprocess.run(
        [sys.executable, "-m", "thinc_losses_plus", "upgrade", str(path), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    assert "L2Distance.v1 -> L2Distance.v2" in proc.stderr


@pytest.mark.parametrize("argv", [["list"], ["info", "L2Distance.v2"], ["example", "textcat_focal"]])
def test_a_reader_that_stops_early_ends_the_command_quietly(argv):
    # `thinc-losses info L2Distance.v2 | head -5`: the pipe is closed before the command writes
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinc_losses_plus", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.wait() == 0, err


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "thinc-losses"]
    assert script.value == "thinc_losses_plus.cli:main"
    assert script.load() is cli.main
    assert set(loss_entry_points()) == set(loss_names())
