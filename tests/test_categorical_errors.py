"""SPEC section 7 for the softmax family: every bad input names calculator, argument, problem."""
import numpy
import pytest
from confection import ConfigValidationError
from thinc.api import registry

from thinc_losses_plus import (
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    KLDivergence,
    SequenceCategoricalCrossentropy,
    SparseCategoricalCrossentropy,
)

P = numpy.asarray([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]], dtype="f")
ONEHOT = numpy.asarray([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype="f")
NAMES = ["a", "b", "c"]
Sparse, Dense, Focal, Seq = (
    SparseCategoricalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    SequenceCategoricalCrossentropy,
)


def with_value(array, index, value):
    array = array.copy()
    array[index] = value
    return array


CALL_ERRORS = [
    # (id, calculator, guesses, truths, error, pattern)
    ("nan-guesses", Sparse(), with_value(P, (0, 0), numpy.nan), [0, 1], ValueError, "'guesses' contains NaN"),
    ("inf-guesses", Sparse(), with_value(P, (0, 0), numpy.inf), [0, 1], ValueError, "'guesses' contains NaN or infinite"),
    ("inf-logits", Sparse(from_logits=True), with_value(P, (1, 2), -numpy.inf), [0, 1], ValueError, "'guesses' contains NaN"),
    ("nan-logits", Dense(from_logits=True), with_value(P, (1, 2), numpy.nan), ONEHOT, ValueError, "'guesses' contains NaN"),
    ("negative-prob", Sparse(), with_value(P, (0, 0), -0.5), [0, 1], ValueError, r"'guesses' must lie in \[0, 1\]"),
    ("not-normalised", Sparse(), P * 0.5, [0, 1], ValueError, "'guesses' rows must sum to 1"),
    ("nan-truths", Dense(), P, with_value(ONEHOT, (0, 1), numpy.nan), ValueError, "'truths' contains NaN"),
    ("truths-not-distribution", Dense(), P, ONEHOT * 2, ValueError, r"'truths' must lie in \[0, 1\]"),
    ("label-too-large", Sparse(), P, [0, 3], ValueError, r"'truths' contains label 3, outside \[0, 3\)"),
    ("label-negative", Sparse(), P, numpy.asarray([-1, 0]), ValueError, "'truths' contains label -1"),
    ("label-negative-not-missing", Sparse(missing_value=-2), P, [-1, 0], ValueError, "'truths' contains label -1"),
    ("unknown-string", Sparse(names=NAMES), P, ["a", "z"], ValueError, "'truths' contains unknown label 'z'"),
    ("unknown-negative", Sparse(names=NAMES, neg_prefix="!"), P, ["a", "!z"], ValueError, "unknown label '!z'"),
    ("strings-without-names", Sparse(), P, ["a", "b"], ValueError, "'truths' are strings but no 'names'"),
    ("names-vs-columns", Sparse(names=["a", "b"]), P, ["a", "b"], ValueError, "'names' has 2 entries but the guesses have 3 columns"),
    ("length-mismatch", Sparse(), P, [0, 1, 2], ValueError, "'truths' has 3 labels but the guesses have 2 rows"),
    ("shape-mismatch", Dense(), P, ONEHOT[:1], ValueError, r"'truths' must have the guesses' shape \(2, 3\)"),
    ("ndim-guesses", Sparse(), P[0], [0], ValueError, "'guesses' must be 2-dimensional"),
    ("ndim-labels", Sparse(), P, numpy.asarray([[0], [1]]), ValueError, "'truths' must be 1-dimensional"),
    ("int-guesses", Sparse(), numpy.asarray([[1, 0], [0, 1]]), [0, 1], TypeError, "'guesses' must have a float dtype"),
    ("list-guesses", Sparse(), P.tolist(), [0, 1], TypeError, "'guesses' must be a numpy or cupy array"),
    ("float-labels", Sparse(), P, numpy.asarray([0.0, 1.0]), TypeError, "'truths' must hold integer class indices"),
    ("float-label-list", Sparse(), P, [0.0, 1.0], TypeError, "'truths' must be class indices .* got float"),
    ("bool-labels", Sparse(), P, [True, False], TypeError, "got bool"),
    ("mixed-labels", Sparse(names=NAMES), P, ["a", 1], TypeError, "'truths' mixes strings with other types"),
    ("labels-to-dense", Dense(), P, [0, 1], TypeError, "'truths' must be a float array of target distributions"),
    ("smoothing-too-large", Sparse(label_smoothing=0.7), P, [0, 1], ValueError, r"'label_smoothing' must be < \(C-1\)/C = 0.666667"),
    ("smoothing-soft-rows", Dense(label_smoothing=0.1), P, P, ValueError, "'label_smoothing' applies to one-hot truth rows only"),
    ("class-weights-length", Sparse(class_weights=[1.0, 2.0]), P, [0, 1], ValueError, "'class_weights' has 2 entries"),
    # a dict needs names: from the config, or supplied later by a spaCy component (with_names)
    ("class-weights-dict-no-names", Sparse(class_weights={"a": 2.0}), P, [0, 1], ValueError, "'class_weights' is a dict, which needs 'names'"),
    ("none-with-missing-value", Sparse(missing_value=-1), P, [None, 1], TypeError, "'truths' contains None"),
    ("sample-weight-shape", Sparse(), P, [0, 1], ValueError, r"'sample_weight' must have shape \(2,\)"),
    ("sample-weight-negative", Sparse(), P, [0, 1], ValueError, "'sample_weight' must be non-negative"),
    ("seq-length", Seq(), [P], [[0, 1], [1]], ValueError, "'truths' has 2 sequences but the guesses have 1"),
    ("seq-rows", Seq(), [P], [[0]], ValueError, "'truths' sequence 0 has 1 entries but its guesses have 2 rows"),
    ("seq-not-list", Seq(), P, [[0, 1]], TypeError, "SequenceCategoricalCrossentropy: 'guesses' must be a list of \\(T, C\\) arrays"),
    ("kl-truths", KLDivergence(), P, ONEHOT * 0.5, ValueError, "'truths' rows must sum to 1"),
]
SAMPLE_WEIGHTS = {"sample-weight-shape": numpy.ones(3), "sample-weight-negative": numpy.asarray([1.0, -1.0])}


@pytest.mark.parametrize("case", CALL_ERRORS, ids=[c[0] for c in CALL_ERRORS])
def test_bad_inputs_raise_clear_errors(case):
    id_, loss_calc, guesses, truths, error, pattern = case
    kwargs = {"sample_weight": SAMPLE_WEIGHTS[id_]} if id_ in SAMPLE_WEIGHTS else {}
    for method in (loss_calc, loss_calc.get_grad, loss_calc.get_loss, loss_calc.get_loss_per_example):
        with pytest.raises(error, match=pattern) as excinfo:
            method(guesses, truths, **kwargs)
        assert str(excinfo.value).startswith(f"Cannot calculate {loss_calc.name}: ")


SETTING_ERRORS = [
    (Sparse, {"label_smoothing": -0.1}, ValueError, r"'label_smoothing' must be in \[0, 1\)"),
    (Sparse, {"label_smoothing": float("nan")}, ValueError, "'label_smoothing' must not be NaN"),
    (Sparse, {"names": ["a", "b", "a"]}, ValueError, r"'names' contains duplicate names: \['a'\]"),
    (Sparse, {"names": ["a", 1]}, TypeError, "'names' must contain only strings"),
    (Sparse, {"names": "abc"}, TypeError, "'names' must be a list of strings"),
    (Sparse, {"missing_value": 1.5}, TypeError, "'missing_value' must be an int or a str"),
    (Sparse, {"missing_value": True}, TypeError, "'missing_value' must be an int or a str"),
    (Sparse, {"neg_prefix": ""}, TypeError, "'neg_prefix' must be a non-empty str"),
    (Sparse, {"normalize": 1}, TypeError, "'normalize' must be a bool"),
    (Sparse, {"class_weights": [1.0, -1.0]}, ValueError, "'class_weights' must be finite and non-negative"),
    (Sparse, {"class_weights": [1.0, float("inf")]}, ValueError, "'class_weights' must be finite"),
    (Sparse, {"class_weights": []}, ValueError, "'class_weights' must not be empty"),
    (Sparse, {"names": ["a"], "class_weights": {"z": 2.0}}, ValueError, r"'class_weights' names unknown labels: \['z'\]"),
    (Dense, {"missing_value": "x"}, TypeError, "'missing_value' must be an int \\(a column index\\)"),
    (Focal, {"gamma": -1.0}, ValueError, r"'gamma' must be in \[0, inf\)"),
    (Focal, {"alpha": 0.0}, ValueError, r"'alpha' must be in \(0, inf\)"),
    (KLDivergence, {"temperature": 0.0}, ValueError, r"'temperature' must be in \(0, inf\)"),
    (Seq, {"sparse": False, "neg_prefix": "!"}, ValueError, "'neg_prefix' applies to label truths only"),
    # names fix C, so label_smoothing >= (C-1)/C is refused at construction, not at the first call
    (Sparse, {"names": ["a", "b"], "label_smoothing": 0.5}, ValueError, r"'label_smoothing' must be < \(C-1\)/C = 0.5 for C = 2 classes \(the 2 names\), got 0.5"),
    (Dense, {"names": NAMES, "label_smoothing": 0.7}, ValueError, r"'label_smoothing' must be < \(C-1\)/C = 0.666667 for C = 3"),
    (Focal, {"names": ["a"], "label_smoothing": 0.1}, ValueError, r"'label_smoothing' must be < \(C-1\)/C = 0 for C = 1"),
    (Seq, {"names": ["a", "b"], "label_smoothing": 0.6}, ValueError, r"'label_smoothing' must be < \(C-1\)/C = 0.5"),
    (Seq, {"sparse": False, "names": ["a", "b"], "label_smoothing": 0.5}, ValueError, r"'label_smoothing' must be < \(C-1\)/C = 0.5"),
]


@pytest.mark.parametrize("cls,settings,error,pattern", SETTING_ERRORS, ids=[f"{c.name}-{s}" for c, s, _, _ in SETTING_ERRORS])
def test_bad_settings_raise_clear_errors(cls, settings, error, pattern):
    with pytest.raises(error, match=pattern) as excinfo:
        cls(**settings)
    assert str(excinfo.value).startswith(f"Cannot create {cls.name}: ")


@pytest.mark.parametrize(
    "block",
    [
        {"@losses": "SparseCategoricalCrossentropy.v4", "unknown": 1},
        {"@losses": "SparseCategoricalCrossentropy.v4", "label_smoothing": "high"},
        {"@losses": "CategoricalCrossentropy.v4", "neg_prefix": "!"},  # a sparse-only setting
        {"@losses": "KLDivergence.v1", "from_logits": "maybe"},
    ],
)
def test_config_validation_refuses_wrong_types_and_unknown_arguments(block):
    with pytest.raises(ConfigValidationError):
        registry.resolve({"loss": block})


def test_empty_batches_give_zero_without_warnings(recwarn):
    empty = numpy.zeros((0, 3), dtype="f")
    for loss_calc, truths in [
        (Sparse(), []),
        (Sparse(names=NAMES), []),
        (Dense(), numpy.zeros((0, 3), dtype="f")),
        (Focal(), numpy.zeros((0,), dtype="i")),
        (KLDivergence(), numpy.zeros((0, 3), dtype="f")),
    ]:
        grad, loss = loss_calc(empty, truths)
        assert loss == 0.0 and grad.shape == (0, 3)
    assert Seq()([], []) == ([], 0.0)
    assert not recwarn.list


@pytest.mark.parametrize("cls", [Sparse, Focal, Seq])
def test_label_smoothing_is_checked_when_a_component_binds_the_names(cls):
    # without names C is unknown until the call; a spaCy component's with_names makes it known
    loss_calc = cls(label_smoothing=0.5)
    with pytest.raises(ValueError, match=r"^Cannot create \w+: 'label_smoothing' must be < \(C-1\)/C = 0.5 for C = 2"):
        loss_calc.with_names(["a", "b"])
    assert loss_calc.with_names(["a", "b", "c"]).label_smoothing == 0.5


def test_label_smoothing_without_names_is_still_checked_at_call_time():
    loss_calc = Sparse(label_smoothing=0.5)
    with pytest.raises(ValueError, match=r"^Cannot calculate SparseCategoricalCrossentropy: 'label_smoothing' must be < \(C-1\)/C = 0.5"):
        loss_calc(numpy.asarray([[0.5, 0.5]], dtype="f"), [0])
    assert Sparse(names=NAMES, label_smoothing=0.5)(P, [0, 2])[1] > 0  # below (C-1)/C = 2/3: fine
