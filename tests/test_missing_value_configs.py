"""Every name taking ``missing_value``, resolved from a config string, masks what it should.

Thinc 9.1's config validation turns an int ``missing_value`` into its string
(``-1`` becomes ``"-1"``) for factories typed ``Union[int, str]``; Thinc 8.3
keeps the int. CI runs this module under both, so each name is checked
through the route users take: a config string, with an int and a str value.
A masked row must get a zero gradient and a zero loss, and the rest must
equal the same batch scored with those rows weighted 0.
"""
import inspect

import numpy
import pytest
from thinc.api import Config, registry

from conftest import to_numpy
from thinc_losses_plus.entry_points import loss_entry_points

NAMES = ["A", "B", "C"]
rng = numpy.random.default_rng(0)
N, C = 6, 3
MASKED = numpy.asarray([True, False, False, True, False, False])


def _probs(n=N, c=C):
    z = rng.normal(size=(n, c))
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype("f")


P = _probs()
INT_LABELS = numpy.asarray([-1, 0, 2, -1, 1, 2])
FIXED_INT = numpy.where(MASKED, 0, INT_LABELS)
STR_LABELS = ["-", "A", "C", "-", "B", "C"]
# Dense truths: rows whose argmax is column 0 are masked by missing_value = 0.
DENSE = numpy.eye(C, dtype="f")[[0, 1, 2, 0, 1, 2]]
DENSE_FIXED = DENSE
SIGMOID_P = rng.uniform(0.05, 0.95, size=(N, C)).astype("f")
SIGMOID_T = (rng.uniform(size=(N, C)) > 0.5).astype("f")
SIGMOID_T[MASKED] = -1.0
SIGMOID_FIXED = numpy.where(SIGMOID_T < 0, 0.0, SIGMOID_T).astype("f")

# name -> list of (id, config value, other settings, guesses, truths, truths with masked rows fixed, masked rows)
SCENARIOS = {
    "SparseCategoricalCrossentropy.v4": [
        ("int", "-1", {}, P, INT_LABELS, FIXED_INT, MASKED),
        ("str-of-int", '"-1"', {}, P, INT_LABELS, FIXED_INT, MASKED),
        ("str", '"-"', {"names": NAMES}, P, STR_LABELS, [s if s != "-" else "A" for s in STR_LABELS], MASKED),
        ("a-name", '"A"', {"names": NAMES}, P, ["A", "B", "C", "A", "B", "C"], ["B", "B", "C", "B", "B", "C"],
         numpy.asarray([True, False, False, True, False, False])),
    ],
    "CategoricalFocalCrossentropy.v1": [
        ("int", "-1", {}, P, INT_LABELS, FIXED_INT, MASKED),
        ("dense-int", "0", {}, P, DENSE, DENSE_FIXED, MASKED),
        ("str", '"-"', {"names": NAMES}, P, STR_LABELS, [s if s != "-" else "A" for s in STR_LABELS], MASKED),
    ],
    "CategoricalCrossentropy.v4": [
        ("dense-int", "0", {}, P, DENSE, DENSE_FIXED, MASKED),
    ],
    "SequenceCategoricalCrossentropy.v4": [
        ("int", "-1", {}, [P[:2], P[2:]], [INT_LABELS[:2], INT_LABELS[2:]], [FIXED_INT[:2], FIXED_INT[2:]], MASKED),
        ("dense-int", "0", {"sparse": False}, [P[:2], P[2:]], [DENSE[:2], DENSE[2:]], [DENSE[:2], DENSE[2:]], MASKED),
        ("str", '"-"', {"names": NAMES}, [P[:2], P[2:]], [STR_LABELS[:2], STR_LABELS[2:]],
         [["A", "A"], ["C", "A", "B", "C"]], MASKED),
    ],
    "BinaryCrossentropy.v1": [
        ("int", "-1", {}, SIGMOID_P, SIGMOID_T, SIGMOID_FIXED, MASKED),
        ("float", "-1.0", {}, SIGMOID_P, SIGMOID_T, SIGMOID_FIXED, MASKED),
    ],
    "BinaryFocalCrossentropy.v1": [
        ("int", "-1", {}, SIGMOID_P, SIGMOID_T, SIGMOID_FIXED, MASKED),
    ],
    "AsymmetricLoss.v1": [
        ("int", "-1", {}, SIGMOID_P, SIGMOID_T, SIGMOID_FIXED, MASKED),
    ],
    "Dice.v1": [
        ("int", "-1", {}, SIGMOID_P, SIGMOID_T, SIGMOID_FIXED, MASKED),
    ],
    "Tversky.v1": [
        ("int", "-1", {}, SIGMOID_P, SIGMOID_T, SIGMOID_FIXED, MASKED),
    ],
    "GeneralizedCrossentropy.v1": [
        ("int", "-1", {}, P, INT_LABELS, FIXED_INT, MASKED),
        ("str-of-int", '"-1"', {}, P, INT_LABELS, FIXED_INT, MASKED),
        ("str", '"-"', {"names": NAMES}, P, STR_LABELS, [s if s != "-" else "A" for s in STR_LABELS], MASKED),
    ],
    "MultiMargin.v1": [
        ("int", "-1", {}, rng.normal(size=(N, C)).astype("f"), INT_LABELS, FIXED_INT, MASKED),
        ("str-of-int", '"-1"', {}, rng.normal(size=(N, C)).astype("f"), INT_LABELS, FIXED_INT, MASKED),
    ],
}


def _takes_missing_value():
    names = []
    for name, ep in loss_entry_points().items():
        if "missing_value" in inspect.signature(ep.load()).parameters:
            names.append(name)
    return sorted(names)


def test_every_name_with_missing_value_has_scenarios():
    assert sorted(SCENARIOS) == _takes_missing_value()


def _config(name, value, settings):
    lines = ["[loss]", f'@losses = "{name}"', f"missing_value = {value}", "normalize = false"]
    for key, setting in settings.items():
        lines.append(f"{key} = {_literal(setting)}")
    return registry.resolve(Config().from_str("\n".join(lines) + "\n"))["loss"]


def _literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return repr(value)


def _plain(name, settings):
    return registry.resolve({"loss": {"@losses": name, "normalize": False, **settings}})["loss"]


def _rows(x):
    """Per-row view of a gradient or per-example losses (lists of sequences concatenated)."""
    if isinstance(x, list):
        return numpy.concatenate([to_numpy(a) for a in x]) if x else numpy.zeros((0,))
    return to_numpy(x)


CASES = [(name, *scenario) for name, scenarios in SCENARIOS.items() for scenario in scenarios]


@pytest.mark.parametrize("name,sid,value,settings,guesses,truths,fixed,masked", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_missing_value_from_a_config_string_masks(name, sid, value, settings, guesses, truths, fixed, masked):
    loss_calc = _config(name, value, settings)
    grad, loss = loss_calc(guesses, truths)
    grad_rows = _rows(grad)
    per_example = _rows(loss_calc.get_loss_per_example(guesses, truths))
    assert (grad_rows[masked] == 0).all(), f"{name} with missing_value = {value}: masked rows get a gradient"
    assert (per_example[masked] == 0).all(), f"{name} with missing_value = {value}: masked rows add to the loss"
    assert (grad_rows[~masked] != 0).any()
    # The other rows: as if the masked rows had weight 0.
    keep = (~masked).astype("f")
    if isinstance(guesses, list):
        bounds = numpy.cumsum([0] + [len(g) for g in guesses])
        weights = [keep[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        weights = keep
    reference = _plain(name, settings)
    grad_ref, loss_ref = reference(guesses, fixed, sample_weight=weights)
    numpy.testing.assert_allclose(grad_rows, _rows(grad_ref), rtol=1e-6, atol=1e-7)
    numpy.testing.assert_allclose(loss, loss_ref, rtol=1e-6, atol=1e-7)
