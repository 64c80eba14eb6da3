"""The label layer (``thinc_losses_plus.labels``): one set of rules for every family."""
import numpy
import pytest

from thinc_losses_plus import CategoricalCrossentropy, SparseCategoricalCrossentropy
from thinc_losses_plus.labels import LabelScheme, check_missing_target, missing_int

P = numpy.asarray([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]], dtype="f")


@pytest.mark.parametrize("value,expected", [(-1, -1), ("-1", -1), (" 3", 3), ("A", None), ("", None), (True, None)])
def test_missing_int_reads_thinc_91_strings(value, expected):
    assert missing_int(value) == expected


def test_a_missing_value_that_can_never_match_int_labels_is_an_error():
    loss_calc = SparseCategoricalCrossentropy(missing_value="")
    with pytest.raises(ValueError, match="SparseCategoricalCrossentropy: 'missing_value' is '', which can never equal"):
        loss_calc(P, numpy.asarray([0, 2, 1]))
    with pytest.raises(ValueError, match="can never equal"):
        loss_calc(P, [0, 2, 1])


def test_missing_value_may_be_one_of_the_names():
    """Thinc's own v4 design: names A, B, C with missing_value "A" masks the rows labelled A."""
    loss_calc = SparseCategoricalCrossentropy(names=["A", "B", "C"], missing_value="A")
    grad, loss = loss_calc(P, ["A", "C", "B"])
    assert (grad[0] == 0).all()
    expected = SparseCategoricalCrossentropy()(P, [0, 2, 1], sample_weight=numpy.asarray([0.0, 1.0, 1.0], "f"))
    numpy.testing.assert_allclose(grad, expected[0], rtol=1e-6)
    numpy.testing.assert_allclose(loss, expected[1], rtol=1e-6)


def test_string_of_an_int_masks_int_labels_and_dense_argmax():
    sparse = SparseCategoricalCrossentropy(missing_value="-1")
    grad, _ = sparse(P, numpy.asarray([-1, 2, 1]))
    assert (grad[0] == 0).all() and (grad[1] != 0).any()
    dense = CategoricalCrossentropy(missing_value="0")  # what Thinc 9.1 makes of missing_value = 0
    grad, _ = dense(P, numpy.eye(3, dtype="f")[[0, 2, 1]])
    assert (grad[0] == 0).all() and (grad[1] != 0).any()


def test_dense_truths_refuse_a_missing_value_that_is_no_column():
    with pytest.raises(TypeError, match="CategoricalCrossentropy: 'missing_value' must be an int"):
        CategoricalCrossentropy(missing_value="x")


def test_str_subclasses_are_labels_with_missing_and_negative_labels():
    loss_calc = SparseCategoricalCrossentropy(names=["A", "B", "C"], missing_value="-", neg_prefix="!")
    plain = ["-", "!B", "C"]
    grad, loss = loss_calc(P, plain)
    grad_np, loss_np = loss_calc(P, list(numpy.asarray(plain)))
    assert grad.tobytes() == grad_np.tobytes() and loss == loss_np


def test_numpy_string_arrays_are_labels():
    loss_calc = SparseCategoricalCrossentropy(names=["A", "B", "C"])
    assert loss_calc(P, numpy.asarray(["A", "C", "B"]))[1] == loss_calc(P, ["A", "C", "B"])[1]


def test_scheme_names_its_calculator():
    scheme = LabelScheme("SequenceCategoricalCrossentropy", names=["A"])
    with pytest.raises(ValueError, match="^Cannot calculate SequenceCategoricalCrossentropy: 'truths' contains unknown label 'Z'"):
        scheme.to_indices(["Z"], 1, 1, numpy)


@pytest.mark.parametrize("value", [-1, "-1", -1.0, "-1.5"])
def test_elementwise_missing_target_accepts_config_strings(value):
    assert check_missing_target("BinaryCrossentropy", value) == float(value)


def test_elementwise_missing_target_refuses_a_valid_target():
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        check_missing_target("BinaryCrossentropy", "0.5")


def test_balanced_class_weights_are_bound_before_use():
    from thinc_losses_plus.class_weights import balanced_class_weights, effective_number_weights

    loss_calc = SparseCategoricalCrossentropy(names=["A", "B", "C"], class_weights="balanced")
    with pytest.raises(ValueError, match="'class_weights' is 'balanced', which must be counted"):
        loss_calc(P, ["A", "B", "C"])
    weights = balanced_class_weights(["A", "A", "B", None], labels=["A", "B", "C"])
    assert weights == {"A": 3 / (3 * 2), "B": 3 / (3 * 1), "C": 1.0}
    bound = loss_calc.with_class_weights(weights)
    explicit = SparseCategoricalCrossentropy(names=["A", "B", "C"], class_weights=weights)
    assert bound(P, ["A", "B", "C"])[1] == explicit(P, ["A", "B", "C"])[1]
    assert loss_calc.class_weights == "balanced"  # the original is unchanged
    effective = effective_number_weights([["A"] * 90, ["B"] * 10], labels=["A", "B"], beta=0.99)
    assert effective["B"] > effective["A"] and abs(sum(effective.values()) - 2.0) < 1e-12
    with pytest.raises(ValueError, match="'class_weights' as a string must be 'balanced'"):
        SparseCategoricalCrossentropy(class_weights="balance")


def test_balanced_from_a_config():
    from thinc.api import registry

    loss_calc = registry.resolve(
        {"loss": {"@losses": "SequenceCategoricalCrossentropy.v4", "names": ["A", "B"], "class_weights": "balanced"}}
    )["loss"]
    assert loss_calc.class_weights == "balanced"
    bound = loss_calc.with_class_weights({"A": 0.5, "B": 2.0})
    assert bound.class_weights == {"A": 0.5, "B": 2.0}
