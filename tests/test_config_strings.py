"""The settings added at this version, resolved from config strings (CI runs this under Thinc 8.3 and 9.1).

Thinc 9.1's config validation coerces some values (an int missing_value
becomes a string); every new setting must reach the calculator with its
meaning, whatever the Thinc version.
"""
import pytest
from thinc.api import Config, registry

from thinc_losses_plus.entry_points import loss_names


def resolve(text):
    return registry.resolve(Config().from_str(text))["loss"]


@pytest.mark.parametrize("name", [n for n in loss_names() if n != "WeightedSum.v1"])
def test_weight_and_reduction_from_a_config_string(name):
    loss_calc = resolve(f'[loss]\n@losses = "{name}"\nweight = 2\nreduction = "examples"\n')
    assert loss_calc.weight == 2.0 and isinstance(loss_calc.weight, float)
    assert loss_calc.reduction == "examples"


def test_weighted_sum_weight_from_a_config_string():
    loss_calc = resolve(
        '[loss]\n@losses = "WeightedSum.v1"\nweight = 0.5\n\n[loss.losses]\n\n[loss.losses.a]\n@losses = "L1Distance.v1"\nweight = 3\n'
    )
    assert loss_calc.weight == 0.5 and loss_calc.losses["a"].weight == 3.0


@pytest.mark.parametrize(
    "name,extra",
    [
        ("SparseCategoricalCrossentropy.v4", 'names = ["A", "B"]'),
        ("SequenceCategoricalCrossentropy.v4", 'names = ["A", "B"]'),
        ("CategoricalFocalCrossentropy.v1", 'names = ["A", "B"]'),
        ("BinaryCrossentropy.v1", 'names = ["A", "B"]'),
        ("MultiMargin.v1", 'names = ["A", "B"]'),
        ("GeneralizedCrossentropy.v1", 'names = ["A", "B"]'),
    ],
)
def test_balanced_class_weights_from_a_config_string(name, extra):
    loss_calc = resolve(f'[loss]\n@losses = "{name}"\n{extra}\nclass_weights = "balanced"\n')
    assert loss_calc.class_weights == "balanced"


@pytest.mark.parametrize("name", ["SparseCategoricalCrossentropy.v4", "CategoricalCrossentropy.v4", "SequenceCategoricalCrossentropy.v4"])
def test_from_log_probs_from_a_config_string(name):
    assert resolve(f'[loss]\n@losses = "{name}"\nfrom_log_probs = true\n').from_log_probs is True


@pytest.mark.parametrize("reduction", ["elements", "weights"])
def test_other_reductions_from_a_config_string(reduction):
    loss_calc = resolve(f'[loss]\n@losses = "SparseCategoricalCrossentropy.v4"\nreduction = "{reduction}"\n')
    assert loss_calc.reduction == reduction
