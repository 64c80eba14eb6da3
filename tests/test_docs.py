"""The docs follow the code: names and arguments come from the entry points.

``docs/api.md`` is generated (``python -m thinc_losses_plus.apidocs``); these
tests fail when it is stale, when a registered name or argument is missing
from it, when it documents one that does not exist, when a page names a loss
nobody registers, or when a docstring's example does not run or resolve.

Every ``python`` and ``pycon`` block of README.md and docs/*.md runs on its
own, in a fresh interpreter started outside the repository (what a reader
who pastes it gets). A block that needs spaCy says so with the HTML comment
``<!-- docs-test: needs spacy -->`` on the line before its fence, and is
skipped where spaCy is not installed (the Thinc-alone CI job). Every
``thinc-losses`` command in a ``bash`` block must parse, and every ``ini``
block that is a ``[loss]`` config of a registered name must resolve.
"""
import doctest
import importlib.util
import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from thinc.api import Config, registry

from thinc_losses_plus import apidocs, catalog
from thinc_losses_plus.entry_points import THINC_BUILTIN_LOSSES, loss_entry_points, loss_names
from thinc_losses_plus.upgrade import RULES, upgrade_config, upgrade_targets

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api.md"
NAME = re.compile(r"(?<![\w.])([A-Z][A-Za-z0-9]*\.v\d+)\b")
PAGES = [ROOT / "README.md"] + sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
MARKERS = {"needs spacy"}
HAS_SPACY = importlib.util.find_spec("spacy") is not None


def code_blocks(text):
    """``(language, code, line, markers)`` of each fenced block; ``line`` is the fence's (1-based)."""
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        markers = set(MARKER.findall(before))
        found.append((match.group(1), match.group(2), line, markers))
    return found


def blocks_of(*languages):
    return [
        pytest.param(page, language, code, markers, id=f"{page.name}:{line}")
        for page in PAGES
        for language, code, line, markers in code_blocks(page.read_text(encoding="utf8"))
        if language in languages
    ]


#: Before each block: hide torch, the tests' oracle and no dependency of the
#: package (Thinc imports it whenever it is installed, seconds per
#: interpreter; a block that needs it fails, as it would for most readers),
#: and give the block an empty ``__main__`` of its own (so that what it
#: defines pickles, as in ``python -c``), holding nothing the runner imported.
PRELUDE = """
import sys, types
sys.modules["torch"] = None
sys.modules["__main__"] = types.ModuleType("__main__")
GLOBALS = sys.modules["__main__"].__dict__
"""
#: Runs a ``python`` block (stdin).
RUN_PYTHON = PRELUDE + "exec(compile(sys.stdin.read(), sys.argv[1], 'exec'), GLOBALS)\n"
#: Runs a ``pycon`` block (stdin) as a doctest.
RUN_PYCON = PRELUDE + """
import doctest
test = doctest.DocTestParser().get_doctest(sys.stdin.read(), {}, sys.argv[1], sys.argv[1], 0)
test.globs = GLOBALS  # the block's own __main__ (DocTest keeps a copy otherwise)
runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
runner.run(test, clear_globs=False)
sys.exit(1 if runner.failures else 0)
"""


def documented_arguments(text):
    """``{name: [argument, ...]}`` read back from the API reference."""
    found = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        name = re.match(r"`([^`]+)`", section).group(1)
        table = section.split("**Arguments**", 1)[1].strip().split("\n\n", 1)[0]
        found[name] = [re.match(r"\| `(\w+)` \|", row).group(1) for row in table.splitlines()[2:]]
    return found


def registered_arguments():
    return {
        name: [p for p in inspect.signature(ep.load()).parameters]
        for name, ep in loss_entry_points().items()
    }


def test_code_blocks_are_found_with_their_markers():
    text = "Intro\n\n<!-- docs-test: needs spacy -->\n```python\nimport spacy\n```\n\n```pycon\n>>> 1\n1\n```\n"
    assert code_blocks(text) == [
        ("python", "import spacy\n", 4, {"needs spacy"}),
        ("pycon", ">>> 1\n1\n", 8, set()),
    ]


@pytest.mark.parametrize("page,language,code,markers", blocks_of("python", "pycon"))
def test_every_python_block_runs_on_its_own(page, language, code, markers, tmp_path):
    unknown = markers - MARKERS
    assert not unknown, f"unknown docs-test marker(s) {sorted(unknown)}; known: {sorted(MARKERS)}"
    if "needs spacy" in markers and not HAS_SPACY:
        pytest.skip("the block needs spaCy")
    command = [sys.executable, "-c", RUN_PYCON if language == "pycon" else RUN_PYTHON, page.name]
    # a fresh interpreter, outside the repository: only what the block imports itself
    done = subprocess.run(command, input=code, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, f"{page.name}: the block fails when pasted:\n{code}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


def test_the_pages_have_runnable_blocks():
    # the README's usage and api.md's examples at least: an extraction bug would skip them all
    languages = [param.values[1] for param in blocks_of("python", "pycon")]
    assert languages.count("python") >= 1 and languages.count("pycon") >= len(loss_names()) - 1


def shell_commands(code):
    """The ``thinc-losses`` (or ``python -m thinc_losses_plus``) commands of a bash block, as argv lists."""
    found = []
    for line in code.splitlines():
        line = line.split(" #", 1)[0].strip()
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part.split(">", 1)[0])
            if words[:1] == ["do"]:
                words = words[1:]
            if words[:1] == ["thinc-losses"]:
                found.append(words[1:])
            elif words[:3] == ["python", "-m", "thinc_losses_plus"]:
                found.append(words[3:])
            elif words[:4] == ["python", "-m", "spacy", "losses"]:
                found.append(words[4:])
    return found


def test_shell_commands_are_found():
    block = 'thinc-losses upgrade a.cfg --check || exit 1\nfor c in *.cfg; do thinc-losses upgrade "$c" --check; done\n'
    block += "thinc-losses example x > config.cfg && python -m spacy train config.cfg\npython -m spacy losses list  # all"
    assert shell_commands(block) == [
        ["upgrade", "a.cfg", "--check"], ["upgrade", "$c", "--check"], ["example", "x"], ["list"]
    ]


@pytest.mark.parametrize("page,language,code,markers", blocks_of("bash", "sh", "shell"))
def test_every_documented_command_parses(page, language, code, markers, capsys):
    from thinc_losses_plus.cli import make_parser

    for argv in shell_commands(code):
        try:
            make_parser().parse_args(argv)
        except SystemExit as done:  # --help and --version exit 0; a bad option exits 2
            assert done.code == 0, f"{page.name}: `thinc-losses {' '.join(argv)}` does not parse: {capsys.readouterr().err}"


@pytest.mark.parametrize("page,language,code,markers", blocks_of("ini"))
def test_every_loss_config_block_resolves(page, language, code, markers):
    known = set(loss_names()) | set(THINC_BUILTIN_LOSSES)
    named = re.findall(r'@losses\s*=\s*"([^"]+)"', code)
    if not code.lstrip().startswith("[loss]") or not set(named) <= known:
        pytest.skip("not a [loss] config of a name registered here (a fragment, or a user's own loss)")
    if re.search(r"^# \w+: required", code, flags=re.M):
        pytest.skip("a defaults-only snippet: its required arguments are named in comments")
    loss = registry.resolve(Config().from_str(code))["loss"]
    assert callable(loss)


def test_api_reference_is_current():
    assert API.exists(), "run: python -m thinc_losses_plus.apidocs"
    assert API.read_text(encoding="utf8") == apidocs.render_api(ROOT), "stale: run python -m thinc_losses_plus.apidocs"


def test_api_reference_documents_exactly_the_registered_names_and_arguments():
    documented = documented_arguments(API.read_text(encoding="utf8"))
    registered = registered_arguments()
    assert sorted(documented) == sorted(registered), "names missing from or extra in docs/api.md"
    for name, arguments in registered.items():
        assert documented[name] == arguments, f"{name}: arguments in docs/api.md differ from its factory"


def test_documented_arguments_parser_catches_a_missing_and_an_extra_argument():
    text = apidocs.render_api(ROOT)
    name = loss_names()[0]
    first = registered_arguments()[name][0]
    broken = text.replace(f"| `{first}` |", "| `not_an_argument` |", 1)
    assert documented_arguments(broken)[name] != registered_arguments()[name]


def test_pages_name_only_losses_that_exist():
    # A loss name: anything after "@losses =", or a versioned name of a known
    # loss family (so "CategoricalCrossentropy.v5" is caught, "TextCatBOW.v3" is not).
    known = set(loss_names()) | set(THINC_BUILTIN_LOSSES)
    families = {name.rsplit(".", 1)[0] for name in known}
    pages = sorted(DOCS.glob("*.md")) + [p for p in [ROOT / "README.md"] if p.exists()]
    assert {"api.md", "versioning.md", "spacy.md"} <= {p.name for p in pages}
    for page in pages:
        text = page.read_text(encoding="utf8")
        named = set(re.findall(r'@losses\s*=\s*"([^"]+)"', text))
        named |= {n for n in NAME.findall(text) if n.rsplit(".", 1)[0] in families}
        # a user's own loss that the page registers itself, in an entry-point line "Name.vN = module:function"
        declared = set(re.findall(r"^\s*([A-Z]\w*\.v\d+)\s*=\s*[\w.]+:\w+\s*$", text, flags=re.M))
        unknown = sorted(named - known - declared)
        assert unknown == [], f"{page.name} names losses nobody registers: {unknown}"


def test_spacy_page_shows_every_example_config():
    text = (DOCS / "spacy.md").read_text(encoding="utf8")
    configs = sorted((ROOT / "configs" / "spacy").glob("*.cfg"))
    assert configs
    for path in configs:
        assert f"`configs/spacy/{path.name}`" in text, f"docs/spacy.md does not show {path.name}"
    from thinc_losses_plus.entry_points import factory_entry_points

    for factory in factory_entry_points():
        assert f"`{factory}`" in text, factory


def test_versioning_page_covers_every_upgrade_rule():
    text = (DOCS / "versioning.md").read_text(encoding="utf8")
    for old in RULES:
        base, version = old.rsplit(".", 1)
        assert f"`{old}`" in text or f"`{base}.v1`, `.v2`, `.v3`" in text, old
        for new in upgrade_targets(old):
            assert f"`{new}`" in text, new


def test_versioning_page_example_output_is_real():
    text = (DOCS / "versioning.md").read_text(encoding="utf8")
    example = text.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    config = (ROOT / "tests" / "data" / "upgrade" / "spacy_tagger_textcat.cfg").read_text(encoding="utf8")
    report = upgrade_config(config).report().splitlines()
    assert example[0] == "config.cfg:"
    for line in example[1:]:
        assert line in report, line


@pytest.mark.parametrize("name", loss_names())
def test_every_loss_documents_shapes_gradient_arguments_and_examples(name):
    info = catalog.describe(name)
    assert info.calculator is not None, f"{name}: annotate the factory's return type"
    assert "Shapes" in info.doc.sections, f"{info.calculator.__name__}: add a 'Shapes: guesses ...; truths ...' paragraph"
    assert "respect to" in info.gradient, f"{info.calculator.__name__}: say what the gradient is taken with respect to"
    undocumented = [a.name for a in info.arguments if not a.description]
    assert undocumented == [], f"{info.calculator.__name__}: describe {undocumented} under 'Args:'"
    assert ">>>" in info.doc.sections.get("Example", ""), f"{info.calculator.__name__}: add an 'Example:' doctest"


@pytest.mark.parametrize("name", loss_names())
def test_config_snippets_resolve(name):
    info = catalog.describe(name)
    examples = [info.doc.sections["Config"]] if "Config" in info.doc.sections else []
    path = ROOT / "configs" / "losses" / f"{name}.cfg"
    if path.exists():
        examples.append(path.read_text(encoding="utf8"))
    if not any(a.required for a in info.arguments):
        examples.append(catalog.config_snippet(info))
    assert examples, f"{name}: no config example (docstring 'Config::' or configs/losses/{name}.cfg)"
    for text in examples:
        loss = registry.resolve(Config().from_str(text))["loss"]
        assert type(loss) is info.calculator, text


@pytest.mark.parametrize("name", loss_names())
def test_docstring_examples_run(name):
    calculator = catalog.describe(name).calculator
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    module = inspect.getmodule(calculator)
    # empty globals: an example that runs when pasted imports what it uses
    tests = finder.find(calculator, calculator.__name__, module=module, globs={})
    assert tests and tests[0].examples
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_default_snippet_matches_signature():
    info = catalog.describe("CategoricalCrossentropy.v3")  # a Thinc name works too
    snippet = catalog.config_snippet(info)
    assert snippet.splitlines()[:2] == ["[loss]", '@losses = "CategoricalCrossentropy.v3"']
    assert "neg_prefix = null" in snippet and "label_smoothing = 0.0" in snippet
    assert registry.resolve(Config().from_str(snippet))["loss"].label_smoothing == 0.0


def test_parse_docstring_sections():
    doc = catalog.parse_docstring(
        """Summary that goes
        on.

        Formula::

            loss = x

        Shapes: guesses (N, C);
        truths (N,).

        Gradient: with respect to x.

        Args:
            a: first.
            b (int): second,
                continued.

        Example:
            >>> 1 + 1
            2

        Config::

            [loss]
            @losses = "X.v1"
        """
    )
    assert doc.summary == "Summary that goes on."
    assert doc.sections["Shapes"] == "guesses (N, C); truths (N,)."
    assert doc.sections["Gradient"] == "with respect to x."
    assert doc.args == {"a": "first.", "b": "second, continued."}
    assert doc.sections["Example"] == ">>> 1 + 1\n2"
    assert doc.sections["Config"] == '[loss]\n@losses = "X.v1"'
    assert apidocs.rst_to_markdown(doc.description) == "Formula:\n\n```text\nloss = x\n```"


# The benchmark chart ---------------------------------------------------------

ROWS = [
    {"name": "A.v1", "case": "8x2", "label": "ours", "seconds": 1e-3, "ratio": None, "target": None, "met": None},
    {"name": "A.v1", "case": "8x2", "label": "thinc v3", "seconds": 1e-2, "ratio": 0.1, "target": 0.2, "met": True},
    {"name": "A.v1", "case": "8x2", "label": "torch", "seconds": 5e-4, "ratio": 2.0, "target": 1.0, "met": False},
    {"name": "A.v1", "case": "8x2", "label": "peak memory / gradient bytes", "seconds": None, "ratio": 1.0,
     "target": 1.1, "met": True},
]


def load_chart():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_chart", ROOT / "benchmarks" / "chart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_draws_every_timed_comparison(tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs the 'docs' extra")
    chart = load_chart()
    results = tmp_path / "results.json"
    results.write_text(json.dumps(ROWS))
    out = tmp_path / "chart.png"
    assert chart.main([str(results), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.draw(ROWS, tmp_path / "again.png") == 2  # the memory row and "ours" are not bars
    with pytest.raises(ValueError, match="no timed comparison"):
        chart.draw(ROWS[:1], tmp_path / "none.png")


def test_chart_classifies_baselines():
    chart = load_chart()
    assert [chart.baseline_kind(r["label"]) for r in chart.timed_comparisons(ROWS)] == ["Thinc", "PyTorch"]


def test_benchmark_page_shows_the_chart():
    page = DOCS / "benchmarks.md"
    assert page.exists(), "run: python benchmarks/run.py && python benchmarks/chart.py"
    assert "](benchmarks.png)" in page.read_text(encoding="utf8")
    assert (DOCS / "benchmarks.png").exists(), "run: python benchmarks/chart.py"
