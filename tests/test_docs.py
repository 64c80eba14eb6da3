"""The docs follow the code: names and arguments come from the entry points.

``docs/api.md`` is generated (``python -m thinc_losses_plus.apidocs``); these
tests fail when it is stale, when a registered name or argument is missing
from it, when it documents one that does not exist, when a page names a loss
nobody registers, or when a docstring's example does not run or resolve.
"""
import doctest
import inspect
import json
import re
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
        unknown = sorted(named - known)
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
    tests = finder.find(calculator, calculator.__name__, globs=dict(vars(module)))
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
