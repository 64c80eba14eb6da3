"""configs/losses/ holds one example per registered name; each resolves and runs."""
import pathlib

import numpy
import pytest
from thinc.api import Config, registry
from thinc.loss import Loss

from battery import inputs, leaves
from cases import all_cases
from thinc_losses_plus.entry_points import loss_names

CONFIGS = pathlib.Path(__file__).parent.parent / "configs" / "losses"
CASES = all_cases()


def test_no_config_for_an_unregistered_name():
    extra = sorted({p.name[: -len(".cfg")] for p in CONFIGS.glob("*.cfg")} - set(loss_names()))
    assert not extra, f"configs for names that are not registered: {extra}"


@pytest.mark.parametrize("name", loss_names())
def test_example_config_resolves_and_runs(name):
    path = CONFIGS / f"{name}.cfg"
    assert path.exists(), f"no example config {path.name}"
    config = Config().from_disk(path)
    assert config["loss"]["@losses"] == name
    assert path.read_text().startswith("# "), "the example says in a comment what it is for"
    loss_calc = registry.resolve(config)["loss"]
    assert isinstance(loss_calc, Loss)
    # It runs on the inputs of at least one battery case of its name.
    errors = []
    for case in (c for c in CASES if c.name == name):
        guesses, truths = inputs(case, numpy, "float32")
        try:
            grad, loss = loss_calc(guesses, truths)
        except (ValueError, TypeError) as err:  # settings that need other inputs
            errors.append(f"{case.id}: {err}")
            continue
        assert numpy.isfinite(loss)
        assert all(numpy.isfinite(g).all() for g in leaves(grad))
        return
    pytest.fail(f"{path.name} runs on no battery case of {name}: {errors}")
