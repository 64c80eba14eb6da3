"""PartialLabelCrossentropy beyond the battery: spaCy's numbers, row weights, errors."""
import math

import numpy
import pytest
from thinc.api import registry

from thinc_losses_plus import PartialLabelCrossentropy


def cpu_log_loss(scores, acceptable):
    """A line-by-line transcription of spaCy's ``cpu_log_loss`` (spacy/ml/parser_model.pyx),
    with costs 0 on the acceptable actions and 1 elsewhere; float64 maths, float32 result."""
    d_scores = numpy.zeros(scores.shape, dtype="float32")
    for r, (row, gold) in enumerate(zip(scores.tolist(), acceptable.tolist())):
        if not any(gold):
            continue
        best = max((i for i in range(len(row)) if gold[i]), key=lambda i: (row[i], -i))
        guess = max(range(len(row)), key=lambda i: (row[i], -i))
        big_z, gold_z = 1e-10, 1e-10
        max_, gmax = row[guess], row[best]
        for i in range(len(row)):
            big_z += math.exp(row[i] - max_)
            if gold[i]:
                gold_z += math.exp(row[i] - gmax)
        for i in range(len(row)):
            if gold[i]:
                d_scores[r, i] = (math.exp(row[i] - max_) / big_z) - (math.exp(row[i] - gmax) / gold_z)
            else:
                d_scores[r, i] = math.exp(row[i] - max_) / big_z
    return d_scores


def random_batch(seed, n=64, c=23, scale=4.0):
    rng = numpy.random.default_rng(seed)
    scores = (rng.normal(size=(n, c)) * scale).astype("float32")
    acceptable = rng.random((n, c)) < 0.15
    acceptable[::7] = False  # rows without a correct action: no gradient
    return scores, acceptable


@pytest.mark.parametrize("seed", range(5))
def test_default_gradient_has_the_bits_of_spacys_cpu_log_loss(seed):
    scores, acceptable = random_batch(seed)
    loss_calc = PartialLabelCrossentropy(normalize=False)
    grad = loss_calc.get_grad(scores, acceptable)
    assert grad.dtype == numpy.float32
    numpy.testing.assert_array_equal(grad.view("int32"), cpu_log_loss(scores, acceptable).view("int32"))


def test_loss_is_minus_log_of_the_acceptable_mass():
    scores, acceptable = random_batch(0, n=8, c=5)
    per_row = PartialLabelCrossentropy().get_loss_per_example(scores.astype("float64"), acceptable)
    z = scores.astype("float64")
    p = numpy.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    mass = (p * acceptable).sum(axis=1)
    expected = numpy.where(acceptable.any(axis=1), -numpy.log(numpy.where(mass > 0, mass, 1.0)), 0.0)
    numpy.testing.assert_allclose(per_row, expected, rtol=1e-8, atol=1e-9)


def test_invalid_columns_leave_the_softmax():
    logits = numpy.asarray([[1.0, 2.0, 3.0]])
    grad, loss = PartialLabelCrossentropy()(logits, numpy.asarray([[1, 0, -1]]))
    p = numpy.exp([1.0, 2.0]) / numpy.exp([1.0, 2.0]).sum()
    assert loss == pytest.approx(-math.log(p[0]), rel=1e-8)
    numpy.testing.assert_allclose(grad, [[p[0] - 1.0, p[1], 0.0]], rtol=1e-8)


def test_a_row_weighs_the_label_of_its_correct_actions():
    names = ["B-PER", "I-PER", "B-LOC", "O"]
    loss_calc = PartialLabelCrossentropy(
        names=names, column_labels=["PER", "PER", "LOC", "O"], class_weights={"PER": 2.0, "LOC": 5.0, "-": 7.0}
    )
    logits = numpy.zeros((4, 4))
    truths = numpy.asarray([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 1, 0]])
    plain = PartialLabelCrossentropy(names=names).get_loss_per_example(logits, truths)
    weighted = loss_calc.get_loss_per_example(logits, truths)
    numpy.testing.assert_allclose(weighted, plain * [2.0, 5.0, 1.0, 7.0])


def test_focal_gamma_down_weights_easy_rows():
    logits = numpy.asarray([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    truths = numpy.asarray([[1, 0, 0], [1, 0, 0]])
    ce = PartialLabelCrossentropy().get_loss_per_example(logits, truths)
    focal = PartialLabelCrossentropy(gamma=2.0).get_loss_per_example(logits, truths)
    p = numpy.exp(-ce)
    numpy.testing.assert_allclose(focal, (1 - p) ** 2 * ce, rtol=1e-10)
    assert focal[0] / ce[0] < 1e-3 < focal[1] / ce[1]


def test_config_resolves_with_the_settings():
    loss_calc = registry.resolve(
        {"loss": {"@losses": "PartialLabelCrossentropy.v1", "gamma": 1.5, "class_weights": [1.0, 2.0]}}
    )["loss"]
    assert isinstance(loss_calc, PartialLabelCrossentropy)
    assert loss_calc.gamma == 1.5 and loss_calc.class_weights == [1.0, 2.0]


@pytest.mark.parametrize(
    "truths,cls,message",
    [
        (numpy.asarray([[1, 0, 2]]), ValueError, "'truths' must hold 1 \\(acceptable\\), 0 \\(wrong\\) or -1"),
        (numpy.asarray([[1.0, 0.0, 0.0]]), TypeError, "'truths' must hold ints or bools"),
        (numpy.asarray([[1, 0]]), ValueError, "'truths' must have the guesses' shape"),
        ("B-PER", TypeError, "'truths' must be an \\(N, C\\) int or bool array"),
    ],
)
def test_bad_truths_name_the_calculator(truths, cls, message):
    with pytest.raises(cls, match="Cannot calculate PartialLabelCrossentropy: " + message):
        PartialLabelCrossentropy()(numpy.zeros((1, 3), dtype="f"), truths)


def test_nan_guesses_name_the_calculator():
    with pytest.raises(ValueError, match="PartialLabelCrossentropy: 'guesses' contains NaN"):
        PartialLabelCrossentropy()(numpy.asarray([[numpy.nan, 0.0]]), numpy.asarray([[1, 0]]))


def test_balanced_must_be_bound_before_the_first_call():
    loss_calc = PartialLabelCrossentropy(names=["A", "B"], class_weights="balanced")
    with pytest.raises(ValueError, match="'class_weights' is 'balanced'"):
        loss_calc(numpy.zeros((1, 2)), numpy.asarray([[1, 0]]))
    bound = loss_calc.with_class_weights({"A": 0.5, "B": 2.0})
    assert bound(numpy.zeros((1, 2)), numpy.asarray([[0, 1]]))[1] == pytest.approx(2.0 * math.log(2.0))


@pytest.mark.parametrize(
    "settings,cls,message",
    [
        ({"gamma": -1.0}, ValueError, "'gamma' must be in"),
        ({"names": ["A", "B"], "column_labels": ["X"]}, ValueError, "'column_labels' has 1 entries"),
        ({"names": ["A"], "class_weights": {"B": 1.0}}, ValueError, "'class_weights' names unknown labels"),
        ({"missing_label": 3}, TypeError, "'missing_label' must be a str"),
        ({"class_weights": "equal"}, ValueError, "'class_weights' as a string must be 'balanced'"),
    ],
)
def test_bad_settings_name_the_calculator(settings, cls, message):
    with pytest.raises(cls, match="Cannot create PartialLabelCrossentropy: " + message):
        PartialLabelCrossentropy(**settings)


def test_with_columns_checks_dict_weights_against_the_labels():
    loss_calc = PartialLabelCrossentropy(class_weights={"PER": 2.0, "-": 3.0})
    bound = loss_calc.with_columns(["B-PER", "O"], ["PER", "O"])
    assert bound.labels() == ["PER", "O"]
    with pytest.raises(ValueError, match="unknown labels: \\['PER'\\]"):
        loss_calc.with_columns(["B-LOC", "O"], ["LOC", "O"])


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 23), (5, 300)])
def test_column_sums_of_the_transposed_copy_are_the_left_to_right_row_sums(shape):
    from thinc_losses_plus.functional.transition import sequential_column_sums, sequential_row_sums

    x = numpy.random.default_rng(1).random(shape) * 10.0 ** numpy.random.default_rng(2).integers(-8, 8, shape)
    numpy.testing.assert_array_equal(
        sequential_column_sums(numpy, numpy.ascontiguousarray(x.T)).view("int64"), sequential_row_sums(numpy, x).view("int64")
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_is_c_contiguous_in_the_guesses_dtype(dtype):
    scores, acceptable = random_batch(0)
    grad, _ = PartialLabelCrossentropy()(scores.astype(dtype), acceptable)
    assert grad.dtype == dtype and grad.flags.c_contiguous


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("with_invalid", [False, True])
def test_row_blocks_and_the_transposed_copy_give_the_same_bits(monkeypatch, gamma, with_invalid):
    """Past TRANSPOSE_COLUMNS the loss runs on row blocks; both layouts give each element the
    same operations. Forced both ways on one batch (several blocks, a ragged last one)."""
    from thinc_losses_plus.functional import transition as F

    rng = numpy.random.default_rng(4)
    scores = rng.normal(size=(203, 37)) * 4
    acceptable = rng.random(scores.shape) < 0.2
    acceptable[::9] = False
    valid = (rng.random(scores.shape) < 0.9) | acceptable if with_invalid else None
    weights = rng.random(203)
    results = {}
    for columns, block in ((10**6, F.BLOCK_ELEMENTS), (0, 37 * 16 + 5)):
        monkeypatch.setattr(F, "TRANSPOSE_COLUMNS", columns)
        monkeypatch.setattr(F, "BLOCK_ELEMENTS", block)
        results[columns] = F.partial_label_cross_entropy(
            numpy, scores, acceptable, valid=valid, row_weights=weights, gamma=gamma, divisor=3.0
        )
    (g1, l1), (g2, l2) = results.values()
    assert g1.flags.c_contiguous and g2.flags.c_contiguous
    numpy.testing.assert_array_equal(g1.view("int64"), g2.view("int64"))
    numpy.testing.assert_array_equal(l1.view("int64"), l2.view("int64"))
    assert numpy.isfinite(g1).all() and (g1[::9] == 0).all()


@pytest.mark.parametrize("c", [300, 1000])
def test_wide_batches_keep_the_bits_of_spacys_cpu_log_loss(c):
    scores, acceptable = random_batch(1, n=40, c=c)
    grad = PartialLabelCrossentropy(normalize=False).get_grad(scores, acceptable)
    numpy.testing.assert_array_equal(grad.view("int32"), cpu_log_loss(scores, acceptable).view("int32"))
