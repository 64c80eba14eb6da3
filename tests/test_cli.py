"""The command line: a thin layer, tested through ``main`` and one subprocess."""
import io
import subprocess
import sys
from pathlib import Path

import pytest
from thinc.api import Config, registry

from thinc_losses_plus import cli
from thinc_losses_plus.catalog import Listing, build_listing, config_snippet, describe, list_losses
from thinc_losses_plus.entry_points import DISTRIBUTION, THINC_BUILTIN_LOSSES, loss_entry_points, loss_names

DATA = Path(__file__).parent / "data" / "upgrade"
OLD = '# pinned\n[loss]\n@losses = "L2Distance.v1"\n\nnormalize = false\n'
NEW = '# pinned\n[loss]\n@losses = "L2Distance.v2"\n\nnormalize = false\n'


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


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


@pytest.mark.parametrize("name", loss_names())
def test_info_for_every_registered_name(name, capsys):
    code, out, _ = run(["info", name], capsys)
    assert code == 0
    info = describe(name)
    assert out.startswith(f"{name}  (provided by {DISTRIBUTION}")
    assert "\nGradient: " in out and "respect to" in out.split("\nGradient: ")[1].split("\n")[0]
    arg_lines = {line.split()[0]: line for line in out.split("\nArguments:\n")[1].split("\n\n")[0].splitlines()}
    assert list(arg_lines) == [arg.name for arg in info.arguments]
    for arg in info.arguments:
        default = "(required)" if arg.required else f"= {cli.catalog.config_value(arg.default)}"
        assert f"  {arg.type}  " in arg_lines[arg.name] and default in arg_lines[arg.name], arg.name
    snippet = out.split("\nConfig:\n")[1].strip()
    assert snippet == config_snippet(info)
    if any(arg.required for arg in info.arguments):
        assert "# " in snippet and "Config example:" in out  # the example fills what has no default
        snippet = out.split("\nConfig example:\n")[1].split("\n\nConfig:\n")[0]
    loss = registry.resolve(Config().from_str(snippet))["loss"]
    assert type(loss) is info.calculator


def test_info_for_a_thinc_builtin_says_what_upgrading_changes(capsys):
    code, out, _ = run(["info", "CategoricalCrossentropy.v2"], capsys)
    assert code == 0
    assert "provided by thinc" in out
    assert "with respect to the logits" in out
    assert "neg_prefix" in out and "label_smoothing" not in out  # v2 has no label_smoothing
    assert "Newer: CategoricalCrossentropy.v4 or SparseCategoricalCrossentropy.v4" in out


def test_info_unknown_name(capsys):
    code, _, err = run(["info", "Nope.v1"], capsys)
    assert code == 2 and "No loss named 'Nope.v1'" in err


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
    assert code == 0 and "No @losses reference to upgrade." in err


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


def test_upgrade_refuses_to_guess_the_truths(tmp_path, capsys):
    path = tmp_path / "a.cfg"
    old = '[loss]\n@losses = "CategoricalCrossentropy.v3"\n'
    path.write_text(old)
    code, out, err = run(["upgrade", str(path), "--write"], capsys)
    assert code == 2 and "--truths" in err and path.read_text() == old
    code, _, _ = run(["upgrade", str(path), "--write", "--truths", "dense"], capsys)
    assert code == 0 and path.read_text() == '[loss]\n@losses = "CategoricalCrossentropy.v4"\n'


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


def test_run_upgrade_is_plain_function(tmp_path):
    path = tmp_path / "a.cfg"
    path.write_text(OLD)
    out, err = io.StringIO(), io.StringIO()
    assert cli.run_upgrade(path, stdout=out, stderr=err) == 0
    assert out.getvalue() == NEW


def test_python_dash_m_and_exit_codes(tmp_path):
    path = tmp_path / "a.cfg"
    path.write_text(OLD)
    proc = subprocess.run(
        [sys.executable, "-m", "thinc_losses_plus", "upgrade", str(path), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    assert "L2Distance.v1 -> L2Distance.v2" in proc.stderr


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "thinc-losses"]
    assert script.value == "thinc_losses_plus.cli:main"
    assert script.load() is cli.main
    assert set(loss_entry_points()) == set(loss_names())
