"""Entry points are the registry: names, versions, and no shadowing of Thinc."""
import inspect
import re
import subprocess
import sys
import typing

import pytest
import thinc.loss
from thinc.api import registry
from thinc.loss import Loss

from thinc_losses_plus.entry_points import THINC_BUILTIN_LOSSES, loss_entry_points, loss_names

NAMES = loss_names()


def thinc_builtin_losses():
    """The names Thinc's own loss module registers, read from Thinc itself."""
    return sorted(
        name
        for name, func in registry.losses.get_all().items()
        if getattr(func, "__module__", "") == thinc.loss.__name__
    )


def test_package_registers_losses():
    assert len(NAMES) >= 5


def test_thinc_builtins_are_the_documented_list():
    assert thinc_builtin_losses() == sorted(THINC_BUILTIN_LOSSES)


@pytest.mark.parametrize("name", THINC_BUILTIN_LOSSES)
def test_no_thinc_builtin_is_shadowed(name):
    assert name not in NAMES
    func = registry.losses.get(name)
    assert func.__module__ == "thinc.loss", f"{name} now resolves to {func.__module__}"
    resolved = registry.resolve({"loss": {"@losses": name}})["loss"]
    assert type(resolved).__module__ == "thinc.loss"


def test_names_follow_thincs_style():
    for name in NAMES:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*\.v[1-9][0-9]*", name), name
    assert all(not name.lower().startswith(("thinc", "plus")) for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_point_is_a_fully_typed_keyword_only_factory(name):
    factory = loss_entry_points()[name].load()
    assert registry.losses.get(name) is factory
    assert factory.__module__ == "thinc_losses_plus.registrations"
    hints = typing.get_type_hints(factory)
    for param in inspect.signature(factory).parameters.values():
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: {param.name} is not keyword-only"
        assert param.name in hints, f"{name}: {param.name} has no type annotation"
        assert param.default is not inspect.Parameter.empty or param.name in ("losses", "weights")
    loss_calc = registry.resolve({"loss": {"@losses": name}})["loss"] if name != "WeightedSum.v1" else None
    if loss_calc is not None:
        assert isinstance(loss_calc, Loss)


def test_resolves_from_a_config_with_no_import_of_the_package():
    script = """
import sys
from thinc.api import Config, registry
config = Config().from_str('''
[loss]
@losses = "SparseCategoricalCrossentropy.v4"
names = ["NOUN", "VERB"]
label_smoothing = 0.1
''')
assert "thinc_losses_plus" not in sys.modules
loss = registry.resolve(config)["loss"]
print(type(loss).__module__, type(loss).__name__, loss.names, loss.label_smoothing)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["thinc_losses_plus.categorical", "SparseCategoricalCrossentropy", "['NOUN',", "'VERB']", "0.1"]


def test_importing_the_package_registers_nothing():
    script = """
import catalogue
from thinc.api import registry
before = set(catalogue.REGISTRY)
import thinc_losses_plus
after = set(catalogue.REGISTRY)
print(len(after - before))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


@pytest.mark.parametrize("name", [n for n in NAMES if n != "WeightedSum.v1"])
def test_softmax_family_flag_matches_the_gradient_convention(name):
    """The flag spaCy components read: given probabilities, is the gradient w.r.t. the logits?"""
    from cases import all_cases

    loss_calc = registry.resolve({"loss": {"@losses": name}})["loss"]
    conventions = {
        c.gradient for c in all_cases()
        if c.name == name and not (c.settings.get("from_logits") or c.settings.get("from_log_probs"))
    } - {"none"}
    if loss_calc.softmax_family:
        assert conventions <= {"logits"}, (name, conventions)
    else:
        assert "logits" not in conventions, (name, conventions)
