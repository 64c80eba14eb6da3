"""Losses for imbalanced and noisy labels: Dice, Tversky, AsymmetricLoss, GeneralizedCrossentropy.

PyTorch autograd of each documented formula is the oracle for loss and
gradient (Li et al.'s per-example DSC and Ridnik et al.'s official ASL code
verbatim too); hypothesis checks the identities of the family (ranges,
limits, special cases); the macro reduction's meaning (divisor C, per-row
shares, weights as multiplicities, masking equals slicing) is pinned; bad
settings and inputs are refused with the calculator and the argument named.
"""
import math

import numpy
import pytest
import torch
from hypothesis import given, settings, strategies as st
from thinc.api import registry

from conftest import to_numpy
from oracle import assert_matches, torch_loss_and_grad
from thinc_losses_plus import (
    AsymmetricLoss,
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    Dice,
    GeneralizedCrossentropy,
    SparseCategoricalCrossentropy,
    Tversky,
)

N, C = 7, 4


def sigmoid_inputs(seed=0, logits=False, soft=False, n=N, c=C):
    rng = numpy.random.default_rng(seed)
    guesses = rng.normal(0, 2.5, (n, c)) if logits else rng.uniform(0.02, 0.98, (n, c))
    truths = rng.uniform(0, 1, (n, c)) if soft else (rng.uniform(size=(n, c)) < 0.3).astype("float64")
    return guesses, truths


def softmax_inputs(seed=0, n=N, c=C):
    rng = numpy.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, c))
    p = numpy.exp(z - z.max(axis=1, keepdims=True))
    return z, p / p.sum(axis=1, keepdims=True), rng.integers(0, c, n)


def ours(calc, guesses, truths, xp, dtype="float32", **kwargs):
    if "sample_weight" in kwargs and kwargs["sample_weight"] is not None:
        kwargs["sample_weight"] = xp.asarray(kwargs["sample_weight"], dtype=dtype)
    truths = xp.asarray(truths, dtype=dtype) if isinstance(truths, numpy.ndarray) and truths.dtype.kind == "f" else truths
    grad, loss = calc(xp.asarray(guesses, dtype=dtype), truths, **kwargs)
    return to_numpy(grad).astype("float64"), loss


def tolerances(dtype):
    return {} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}


# Torch formulas, as documented ------------------------------------------------------------


def torch_dice(x, t, *, smooth=1.0, average="samples", squared=False, a=0.0, logits=False, inside=None, rows=None, normalize=True):
    """1 - (2 sum q t + s) / (sum q + sum t + s) per row or column; ``inside`` weights in the sums."""
    p = torch.sigmoid(x) if logits else x
    q = (1 - p) ** a * p
    w = torch.ones_like(q) if inside is None else torch.tensor(inside)
    dim = 1 if average == "samples" else 0
    intersection = (w * q * t).sum(dim)
    union = (w * (q * q + t * t)).sum(dim) if squared else (w * (q + t)).sum(dim)
    losses = 1 - (2 * intersection + smooth) / (union + smooth)
    if rows is not None:
        losses = losses * torch.tensor(rows)
    divisor = (x.shape[0] if average == "samples" else x.shape[1]) if normalize else 1
    return losses.sum() / divisor


def torch_tversky(x, t, *, alpha=0.3, beta=0.7, smooth=1.0, average="samples", logits=False, inside=None):
    p = torch.sigmoid(x) if logits else x
    w = torch.ones_like(p) if inside is None else torch.tensor(inside)
    dim = 1 if average == "samples" else 0
    tp, fp, fn = (w * p * t).sum(dim), (w * p * (1 - t)).sum(dim), (w * (1 - p) * t).sum(dim)
    losses = 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    return losses.sum() / (x.shape[0] if average == "samples" else x.shape[1])


def ridnik_asl(x, y, *, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8, logits=True):
    """AsymmetricLoss.forward of https://github.com/Alibaba-MIIL/ASL (losses.py), verbatim
    (disable_torch_grad_focal_loss = False), with the sigmoid optional."""
    x_sigmoid = torch.sigmoid(x) if logits else x
    xs_pos = x_sigmoid
    xs_neg = 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        pt0 = xs_pos * y
        pt1 = xs_neg * (1 - y)
        pt = pt0 + pt1
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        one_sided_w = torch.pow(1 - pt, one_sided_gamma)
        loss *= one_sided_w
    return -loss.sum()


def torch_asl_formula(x, t, *, gamma_pos, gamma_neg, clip, logits):
    """-t (1 - p)^gp log p - (1 - t) p_m^gn log(1 - p_m), p_m = max(p - clip, 0), summed."""
    p = torch.sigmoid(x) if logits else x
    p_m = torch.clamp(p - clip, min=0)
    return (-t * (1 - p) ** gamma_pos * torch.log(p) - (1 - t) * p_m**gamma_neg * torch.log(1 - p_m)).sum()


def torch_gce(z, y, *, q, weights=None):
    p_y = torch.softmax(z, dim=1)[torch.arange(z.shape[0]), torch.tensor(y)]
    w = 1.0 if weights is None else torch.tensor(weights, dtype=z.dtype)[torch.tensor(y)]
    return (w * (1 - p_y**q) / q).sum() / z.shape[0]


# Dice ---------------------------------------------------------------------------------------

DICE_SETTINGS = [
    {},
    {"smooth": 0.1, "squared_denominator": True},
    {"self_adjusting": 1.0},
    {"self_adjusting": 0.5, "smooth": 0.5},
    {"self_adjusting": 2.0, "squared_denominator": True},
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("average", ["samples", "macro"])
@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("setting", DICE_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_dice_matches_torch(xp, dtype, average, logits, setting):
    guesses, truths = sigmoid_inputs(1, logits=logits, soft=bool(setting.get("squared_denominator")))
    t = torch.tensor(truths)
    expected = torch_loss_and_grad(
        lambda x: torch_dice(
            x, t, smooth=setting.get("smooth", 1.0), average=average, squared=setting.get("squared_denominator", False),
            a=setting.get("self_adjusting", 0.0), logits=logits,
        ),
        guesses,
    )
    calc = Dice(average=average, from_logits=logits, **setting)
    assert_matches(ours(calc, guesses, truths, xp, dtype), expected, **tolerances(dtype))


@pytest.mark.parametrize("alpha", [0.0, 1.0, 0.3])
def test_dice_per_example_is_li_et_al_dsc(xp, alpha):
    """Li et al. (2020), eq. for one example: DSC = (2 (1-p)^a p y + g) / ((1-p)^a p + y + g)."""
    rng = numpy.random.default_rng(2)
    p, y = rng.uniform(0.01, 0.99, 50), (rng.uniform(size=50) < 0.2).astype("float64")
    gamma = 1.0
    yt = torch.tensor(y)

    def dsc_loss(x):
        adjusted = (1 - x) ** alpha * x
        return (1 - (2 * adjusted * yt + gamma) / (adjusted + yt + gamma)).mean()

    calc = Dice(self_adjusting=alpha, smooth=gamma)
    assert_matches(ours(calc, p, y, xp, "float64"), torch_loss_and_grad(dsc_loss, p), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("average", ["samples", "macro"])
def test_dice_weights_and_missing_values_match_torch(xp, average):
    guesses, truths = sigmoid_inputs(3, soft=True)
    rng = numpy.random.default_rng(4)
    missing = rng.uniform(size=truths.shape) < 0.25
    elements = rng.uniform(0.0, 2.0, truths.shape)
    rows = rng.uniform(0.0, 2.0, N)
    marked = numpy.where(missing, -1.0, truths)
    keep = (~missing).astype("float64")
    calc = Dice(average=average, missing_value=-1, smooth=0.5)
    t = torch.tensor(numpy.where(missing, 0.0, truths))
    # per-element weights act inside the sums, as the mask of the missing entries
    expected = torch_loss_and_grad(lambda x: torch_dice(x, t, smooth=0.5, average=average, inside=elements * keep), guesses)
    assert_matches(ours(calc, guesses, marked, xp, "float64", sample_weight=elements), expected, rtol=1e-10, atol=1e-12)
    # per-example weights: the row's multiplicity
    if average == "samples":
        expected = torch_loss_and_grad(lambda x: torch_dice(x, t, smooth=0.5, inside=keep, rows=rows), guesses)
    else:
        expected = torch_loss_and_grad(
            lambda x: torch_dice(x, t, smooth=0.5, average="macro", inside=rows[:, None] * keep), guesses
        )
    for weights in (rows, rows[:, None]):
        assert_matches(ours(calc, guesses, marked, xp, "float64", sample_weight=weights), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["Dice", "Tversky"])
def test_macro_divides_by_the_number_of_classes_and_shares_add_up(name):
    guesses, truths = sigmoid_inputs(5, soft=True)
    cls = {"Dice": Dice, "Tversky": Tversky}[name]
    calc = cls(average="macro")
    grad_n, loss_n = calc(guesses, truths)
    grad_s, loss_s = cls(average="macro", normalize=False)(guesses, truths)
    numpy.testing.assert_allclose(loss_n * C, loss_s, rtol=1e-12)
    numpy.testing.assert_allclose(grad_n * C, grad_s, rtol=1e-12)
    # the shares are non-negative and add up to sum_c L_c, the torch loss of the columns
    shares = calc.get_loss_per_example(guesses, truths)
    assert shares.shape == (N,) and (shares >= 0).all()
    t = torch.tensor(truths)
    formula = torch_dice if name == "Dice" else torch_tversky
    expected = float(formula(torch.tensor(guesses), t, average="macro")) * C
    numpy.testing.assert_allclose(shares.sum(), expected, rtol=1e-12)
    # the loss is a ratio of batch sums: the batch three times over (and smooth with it) leaves it as it is
    tripled = cls(average="macro", smooth=3.0).get_loss(numpy.concatenate([guesses] * 3), numpy.concatenate([truths] * 3))
    numpy.testing.assert_allclose(tripled, loss_n, rtol=1e-12)


@pytest.mark.parametrize("cls", [Dice, Tversky])
@pytest.mark.parametrize("average", ["samples", "macro"])
def test_zero_weight_equals_slicing(cls, average):
    guesses, truths = sigmoid_inputs(6)
    calc = cls(average=average)
    # an example with weight 0 is as if it was not there
    rows = numpy.ones(N)
    rows[[1, 4]] = 0.0
    kept = numpy.flatnonzero(rows)
    grad, loss = calc(guesses, truths, sample_weight=rows)
    grad_sliced, loss_sliced = calc(guesses[kept], truths[kept])
    scale = N / len(kept) if average == "samples" else 1.0  # samples: normalize still divides by all N
    numpy.testing.assert_allclose(loss * scale, loss_sliced, rtol=1e-12)
    numpy.testing.assert_allclose(grad[kept] * scale, grad_sliced, rtol=1e-12, atol=1e-15)
    assert (grad[[1, 4]] == 0).all()
    # an entry with weight 0 (or a missing truth) is as if it was not in its group
    elements = numpy.ones((N, C))
    elements[:, 2] = 0.0
    grad_e, loss_e = calc(guesses, truths, sample_weight=elements)
    marked = truths.copy()
    marked[:, 2] = -1.0
    grad_m, loss_m = cls(average=average, missing_value=-1)(guesses, marked)
    grad_c, loss_c = calc(numpy.delete(guesses, 2, axis=1), numpy.delete(truths, 2, axis=1))
    assert loss_m == loss_e
    numpy.testing.assert_array_equal(grad_m, grad_e)
    if average == "macro":  # one class fewer: C - 1 classes
        loss_c = loss_c * (C - 1) / C
        grad_c = grad_c * (C - 1) / C
    numpy.testing.assert_allclose(loss_e, loss_c, rtol=1e-12)
    numpy.testing.assert_allclose(numpy.delete(grad_e, 2, axis=1), grad_c, rtol=1e-12, atol=1e-15)
    assert (grad_e[:, 2] == 0).all()


def test_macro_sample_weight_shapes_and_lengths():
    guesses, truths = sigmoid_inputs(7)
    calc = Dice(average="macro")
    weights = numpy.random.default_rng(0).uniform(0.5, 2.0, N)
    flat, column = calc(guesses, truths, sample_weight=weights), calc(guesses, truths, sample_weight=weights[:, None])
    assert flat[1] == column[1]
    numpy.testing.assert_array_equal(flat[0], column[0])
    # an integer weight is a multiplicity: weight 2 is the example twice
    twice = numpy.ones(N)
    twice[0] = 2.0
    grad, loss = calc(guesses, truths, sample_weight=twice)
    grad_dup, loss_dup = calc(numpy.concatenate([guesses, guesses[:1]]), numpy.concatenate([truths, truths[:1]]))
    numpy.testing.assert_allclose(loss, loss_dup, rtol=1e-12)
    numpy.testing.assert_allclose(grad[0], grad_dup[0] + grad_dup[-1], rtol=1e-12)
    with pytest.raises(ValueError, match="Cannot calculate Dice: 'sample_weight' must have shape"):
        calc(guesses, truths, sample_weight=numpy.ones(N + 1))


def test_self_adjusting_gradient_vanishes_at_one_half():
    """Documented: with a = 1, (1 - p) p peaks at p = 0.5, so a model starting there gets no gradient."""
    grad = Dice(self_adjusting=1.0).get_grad(numpy.full((3, 2), 0.5), numpy.asarray([[1.0, 0.0]] * 3))
    assert numpy.abs(grad).max() == 0.0


# Tversky --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("average", ["samples", "macro"])
@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("alpha,beta,smooth", [(0.3, 0.7, 1.0), (1.0, 1.0, 0.1), (2.0, 0.0, 0.5)])
def test_tversky_matches_torch(xp, dtype, average, logits, alpha, beta, smooth):
    guesses, truths = sigmoid_inputs(8, logits=logits, soft=True)
    t = torch.tensor(truths)
    expected = torch_loss_and_grad(
        lambda x: torch_tversky(x, t, alpha=alpha, beta=beta, smooth=smooth, average=average, logits=logits), guesses
    )
    calc = Tversky(alpha=alpha, beta=beta, smooth=smooth, average=average, from_logits=logits)
    assert_matches(ours(calc, guesses, truths, xp, dtype), expected, **tolerances(dtype))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), smooth=st.floats(0.01, 10.0), average=st.sampled_from(["samples", "macro"]))
def test_tversky_one_half_is_dice_with_twice_the_smoothing(seed, smooth, average):
    guesses, truths = sigmoid_inputs(seed, soft=True)
    tversky = Tversky(alpha=0.5, beta=0.5, smooth=smooth, average=average)(guesses, truths)
    dice = Dice(smooth=2 * smooth, average=average)(guesses, truths)
    numpy.testing.assert_allclose(tversky[1], dice[1], rtol=1e-10)
    numpy.testing.assert_allclose(tversky[0], dice[0], rtol=1e-9, atol=1e-14)


def test_tversky_one_one_is_the_soft_jaccard_loss():
    guesses, truths = sigmoid_inputs(9)
    s = 0.3
    intersection = (guesses * truths).sum(axis=1)
    union = guesses.sum(axis=1) + truths.sum(axis=1) - intersection
    expected = (1 - (intersection + s) / (union + s)).mean()
    numpy.testing.assert_allclose(Tversky(alpha=1.0, beta=1.0, smooth=s).get_loss(guesses, truths), expected, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 12),
    logits=st.booleans(),
    average=st.sampled_from(["samples", "macro"]),
    self_adjusting=st.sampled_from([0.0, 0.3, 1.0, 3.0]),
    squared=st.booleans(),
    smooth=st.floats(1e-4, 5.0),
)
def test_overlap_losses_lie_in_zero_one(seed, n, logits, average, self_adjusting, squared, smooth):
    guesses, truths = sigmoid_inputs(seed, logits=logits, soft=bool(seed % 2), n=n)
    for calc in (
        Dice(average=average, from_logits=logits, self_adjusting=self_adjusting, squared_denominator=squared, smooth=smooth),
        Tversky(average=average, from_logits=logits, smooth=smooth, alpha=seed % 3 / 2, beta=0.5),
    ):
        per_example = calc.get_loss_per_example(guesses, truths)
        assert (per_example >= 0).all()
        loss = calc.get_loss(guesses, truths)
        assert 0.0 <= loss <= 1.0 + 1e-12
        if average == "samples":
            assert (per_example <= 1.0 + 1e-12).all()


def test_overlap_losses_reach_zero_for_perfect_guesses():
    truths = (numpy.random.default_rng(0).uniform(size=(6, 3)) < 0.5).astype("float64")
    for calc in (Dice(smooth=1e-6), Dice(average="macro", smooth=1e-6), Tversky(smooth=1e-6), Tversky(average="macro")):
        assert calc.get_loss(truths, truths) == pytest.approx(0.0, abs=1e-6)


# AsymmetricLoss ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("logits", [False, True])
# (A fractional gamma_neg with clip > 0 is left out: torch's pow(0, 0.5) has a NaN
# derivative where a negative lies below the margin; ours is the limit, 0.)
@pytest.mark.parametrize("gamma_pos,gamma_neg,clip", [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (1.0, 2.0, 0.0), (0.5, 0.5, 0.0), (2.0, 1.0, 0.3)])
def test_asymmetric_loss_matches_the_official_code(xp, dtype, logits, gamma_pos, gamma_neg, clip):
    guesses, truths = sigmoid_inputs(10, logits=logits)
    t = torch.tensor(truths)
    expected = torch_loss_and_grad(
        lambda x: ridnik_asl(x, t, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, logits=logits), guesses
    )
    calc = AsymmetricLoss(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, from_logits=logits, normalize=False)
    assert_matches(ours(calc, guesses, truths, xp, dtype), expected, **tolerances(dtype))


@pytest.mark.parametrize("logits", [False, True])
def test_asymmetric_loss_soft_targets_missing_and_weights_match_torch(xp, logits):
    guesses, truths = sigmoid_inputs(11, logits=logits, soft=True)
    rng = numpy.random.default_rng(12)
    missing = rng.uniform(size=truths.shape) < 0.2
    weights = rng.uniform(0, 2, (N, C))
    keep = torch.tensor((~missing) * weights)
    t = torch.tensor(numpy.where(missing, 0.0, truths))

    def formula(x):
        p = torch.sigmoid(x) if logits else x
        p_m = torch.clamp(p - 0.1, min=0)
        terms = -t * (1 - p) ** 1.5 * torch.log(p) - (1 - t) * p_m**3.0 * torch.log(1 - p_m)
        return (keep * terms).sum() / N

    calc = AsymmetricLoss(gamma_pos=1.5, gamma_neg=3.0, clip=0.1, from_logits=logits, missing_value=-1)
    result = ours(calc, guesses, numpy.where(missing, -1.0, truths), xp, "float64", sample_weight=weights)
    assert_matches(result, torch_loss_and_grad(formula, guesses), rtol=1e-10, atol=1e-12)
    assert (result[0][missing] == 0).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), gamma=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]), logits=st.booleans())
def test_asymmetric_loss_with_equal_gammas_and_no_clip_is_the_focal_loss(seed, gamma, logits):
    # (hard labels: for soft targets the focal loss modulates the whole cross-entropy
    # by (1 - p_t)^gamma, the asymmetric loss mixes its two terms linearly)
    guesses, truths = sigmoid_inputs(seed, logits=logits, soft=gamma == 0.0)
    asl = AsymmetricLoss(gamma_pos=gamma, gamma_neg=gamma, clip=0.0, from_logits=logits)(guesses, truths)
    focal = BinaryFocalCrossentropy(gamma=gamma, from_logits=logits)(guesses, truths)
    numpy.testing.assert_allclose(asl[1], focal[1], rtol=1e-10)
    numpy.testing.assert_allclose(asl[0], focal[0], rtol=1e-8, atol=1e-12)
    if gamma == 0.0:
        bce = BinaryCrossentropy(from_logits=logits)(guesses, truths)
        numpy.testing.assert_allclose(asl[1], bce[1], rtol=1e-10)
        numpy.testing.assert_allclose(asl[0], bce[0], rtol=1e-10, atol=1e-12)


def test_asymmetric_loss_ignores_negatives_below_the_margin():
    guesses = numpy.asarray([[0.01, 0.04, 0.3]])
    grad, loss = AsymmetricLoss(clip=0.05)(guesses, numpy.zeros((1, 3)))
    assert grad[0, 0] == grad[0, 1] == 0.0 and grad[0, 2] > 0
    assert loss == pytest.approx(-(0.25**4) * math.log(0.75))


# GeneralizedCrossentropy --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("q", [0.1, 0.7, 1.0])
def test_gce_matches_torch(xp, dtype, from_logits, q):
    """Given probabilities, the gradient is with respect to the logits: torch's gradient at z."""
    z, p, y = softmax_inputs(13)
    weights = [1.0, 2.0, 0.5, 3.0]
    for class_weights in (None, weights):
        expected = torch_loss_and_grad(lambda x: torch_gce(x, y, q=q, weights=class_weights), z)
        calc = GeneralizedCrossentropy(q=q, from_logits=from_logits, class_weights=class_weights)
        assert_matches(ours(calc, z if from_logits else p, y, xp, dtype), expected, **tolerances(dtype))


def test_gce_dense_targets_and_sample_weights_match_torch(xp):
    z, p, y = softmax_inputs(14)
    target = numpy.random.default_rng(1).dirichlet(numpy.ones(C), N)
    weights = numpy.random.default_rng(2).uniform(0, 2, (N, C))
    q = 0.6

    def formula(x):
        probs = torch.softmax(x, dim=1)
        return (torch.tensor(weights * target) * (1 - probs**q) / q).sum() / N

    expected = torch_loss_and_grad(formula, z)
    for from_logits, guesses in ((True, z), (False, p)):
        calc = GeneralizedCrossentropy(q=q, from_logits=from_logits)
        assert_matches(ours(calc, guesses, target, xp, "float64", sample_weight=weights), expected, rtol=1e-10, atol=1e-12)


def test_gce_one_hot_rows_equal_labels_and_spacy_masks():
    z, p, y = softmax_inputs(15)
    calc = GeneralizedCrossentropy()
    one_hot = numpy.eye(C)[y]
    grad_l, loss_l = calc(p, y)
    grad_d, loss_d = calc(p, one_hot)
    numpy.testing.assert_allclose(loss_d, loss_l, rtol=1e-12)
    numpy.testing.assert_allclose(grad_d, grad_l, rtol=1e-12, atol=1e-15)
    # a row weight 0 (spaCy's missing annotation) equals a missing label
    rows = numpy.ones((N, 1))
    rows[2] = 0.0
    labels = [int(v) for v in y]
    labels[2] = None
    grad_w, loss_w = calc(p, one_hot, sample_weight=rows)
    grad_m, loss_m = calc(p, labels)
    numpy.testing.assert_allclose(loss_w, loss_m, rtol=1e-12)
    numpy.testing.assert_allclose(grad_w, grad_m, rtol=1e-12, atol=1e-15)


def test_gce_negative_label_scores_not_y():
    z, p, y = softmax_inputs(16)
    names = ["A", "B", "C", "D"]
    q = 0.4
    calc = GeneralizedCrossentropy(q=q, names=names, neg_prefix="!")
    labels = ["!" + names[i] if k % 2 else names[i] for k, i in enumerate(y)]
    grad, _ = calc(p, labels)
    per_example = calc.get_loss_per_example(p, labels)
    for k, i in enumerate(y):
        if k % 2:
            assert per_example[k] == pytest.approx((1 - (1 - p[k, i]) ** q) / q, rel=1e-12)
            expected = numpy.zeros(C)
            expected[i] = p[k, i] * (1 - p[k, i]) ** q / N
            numpy.testing.assert_allclose(grad[k], expected, rtol=1e-12)
    # q -> 0: the cross-entropy's negative-label gradient p_y
    grad_ce = SparseCategoricalCrossentropy(names=names, neg_prefix="!").get_grad(p, labels)
    grad_small = GeneralizedCrossentropy(q=1e-7, names=names, neg_prefix="!").get_grad(p, labels)
    numpy.testing.assert_allclose(grad_small, grad_ce, rtol=1e-5, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 10), from_logits=st.booleans())
def test_gce_tends_to_the_cross_entropy_as_q_goes_to_zero(seed, n, from_logits):
    z, p, y = softmax_inputs(seed, n=n)
    guesses = z if from_logits else p
    gce = GeneralizedCrossentropy(q=1e-7, from_logits=from_logits)(guesses, y)
    ce = SparseCategoricalCrossentropy(from_logits=from_logits)(guesses, y)
    # probability guesses: the cross-entropy takes log(p + 1e-9), the GCE the exact power
    numpy.testing.assert_allclose(gce[1], ce[1], rtol=1e-5, atol=1e-8)
    numpy.testing.assert_allclose(gce[0], ce[0], rtol=1e-5, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), q=st.floats(0.01, 1.0), from_logits=st.booleans())
def test_gce_is_bounded_by_one_over_q_and_q_one_is_one_minus_p(seed, q, from_logits):
    z, p, y = softmax_inputs(seed)
    guesses = z if from_logits else p
    per_example = GeneralizedCrossentropy(q=q, from_logits=from_logits).get_loss_per_example(guesses, y)
    assert (per_example >= 0).all() and (per_example <= 1 / q + 1e-9).all()
    mae = GeneralizedCrossentropy(q=1.0, from_logits=from_logits).get_loss_per_example(guesses, y)
    numpy.testing.assert_allclose(mae, 1 - p[numpy.arange(N), y], rtol=1e-9, atol=1e-12)


def test_gce_zero_probability_of_the_label_is_finite():
    p = numpy.asarray([[0.0, 1.0], [0.5, 0.5]])
    grad, loss = GeneralizedCrossentropy(q=0.5)(p, [0, 1])
    assert loss == pytest.approx((1 / 0.5 + (1 - 0.5**0.5) / 0.5) / 2)
    assert numpy.isfinite(grad).all() and (grad[0] == 0).all()


# Reductions and the scalar weight ------------------------------------------------------------


@pytest.mark.parametrize("logits", [False, True])
def test_asymmetric_loss_elements_reduction_is_the_torch_mean(logits):
    guesses, truths = sigmoid_inputs(20, logits=logits)
    t = torch.tensor(truths)
    expected = torch_loss_and_grad(
        lambda x: torch_asl_formula(x, t, gamma_pos=1.0, gamma_neg=4.0, clip=0.05, logits=logits) / (N * C), guesses
    )
    calc = AsymmetricLoss(gamma_pos=1.0, from_logits=logits, reduction="elements")
    assert_matches(ours(calc, guesses, truths, numpy, "float64"), expected, rtol=1e-10, atol=1e-12)


def test_gce_weights_reduction_is_the_weighted_mean():
    z, p, y = softmax_inputs(21)
    weights = [0.5, 2.0, 1.0, 3.0]
    w_y = torch.tensor(weights, dtype=torch.float64)[torch.tensor(y)]
    expected = torch_loss_and_grad(lambda x: torch_gce(x, y, q=0.7, weights=weights) * N / w_y.sum(), z)
    calc = GeneralizedCrossentropy(class_weights=weights, reduction="weights", from_logits=True)
    assert_matches(ours(calc, z, y, numpy, "float64"), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "cls,settings", [(Dice, {}), (Tversky, {}), (Dice, {"average": "macro"})], ids=["Dice", "Tversky", "Dice-macro"]
)
def test_overlap_losses_refuse_the_elements_reduction(cls, settings):
    with pytest.raises(ValueError, match=f"Cannot create {cls.__name__}: 'reduction' must be one of \\['examples'\\]"):
        cls(reduction="elements", **settings)


@pytest.mark.parametrize(
    "cls,settings",
    [(Dice, {"average": "macro"}), (Tversky, {}), (AsymmetricLoss, {}), (GeneralizedCrossentropy, {})],
    ids=["Dice-macro", "Tversky", "AsymmetricLoss", "GeneralizedCrossentropy"],
)
def test_weight_scales_loss_and_gradient(cls, settings):
    if cls is GeneralizedCrossentropy:
        _, guesses, truths = softmax_inputs(22)
    else:
        guesses, truths = sigmoid_inputs(22)
    grad, loss = cls(weight=2.5, **settings)(guesses, truths)
    grad_1, loss_1 = cls(**settings)(guesses, truths)
    numpy.testing.assert_allclose(loss, 2.5 * loss_1, rtol=1e-12)
    numpy.testing.assert_allclose(grad, 2.5 * grad_1, rtol=1e-12)


# Extreme inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "calc",
    [
        Dice(from_logits=True),
        Dice(from_logits=True, average="macro", self_adjusting=0.5, squared_denominator=True),
        Tversky(from_logits=True, average="macro"),
        AsymmetricLoss(from_logits=True),
        AsymmetricLoss(from_logits=True, clip=0.0, gamma_pos=0.5, gamma_neg=0.5),
        GeneralizedCrossentropy(from_logits=True),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits_give_finite_results(calc, dtype):
    guesses = numpy.asarray([[1e4, -1e4, 0.0, 30.0], [-1e4, 1e4, -30.0, 1e-3]], dtype=dtype)
    truths = [0, 1] if isinstance(calc, GeneralizedCrossentropy) else numpy.asarray([[1, 0, 1, 0], [1, 1, 0, 0]], dtype=dtype)
    grad, loss = calc(guesses, truths)
    assert math.isfinite(loss) and numpy.isfinite(grad).all()


@pytest.mark.parametrize(
    "calc",
    [Dice(self_adjusting=0.5), Dice(average="macro", self_adjusting=1.0), Tversky(), AsymmetricLoss(gamma_pos=0.5, gamma_neg=0.5, clip=0.0)],
    ids=repr,
)
def test_probabilities_of_zero_and_one_give_finite_results(calc):
    guesses = numpy.asarray([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5]], dtype="f")
    grad, loss = calc(guesses, numpy.asarray([[1, 0, 1], [1, 1, 0]], dtype="f"))
    assert math.isfinite(loss) and numpy.isfinite(grad).all()


def test_float16_guesses_give_float16_gradients():
    guesses, truths = sigmoid_inputs(17)
    for calc in (Dice(average="macro"), Tversky(), AsymmetricLoss()):
        grad, loss = calc(guesses.astype("float16"), truths.astype("float16"))
        assert grad.dtype == numpy.float16
        numpy.testing.assert_allclose(loss, calc.get_loss(guesses, truths), rtol=2e-2)


# Bad settings and inputs ---------------------------------------------------------------------

BAD_SETTINGS = [
    ("Dice.v1", {"smooth": 0.0}, "'smooth' must be in (0, inf)", ValueError),
    ("Dice.v1", {"smooth": -1.0}, "'smooth' must be in (0, inf)", ValueError),
    ("Dice.v1", {"average": "micro"}, "'average' must be one of ['samples', 'macro']", ValueError),
    ("Dice.v1", {"self_adjusting": -0.5}, "'self_adjusting' must be in [0, inf)", ValueError),
    ("Dice.v1", {"missing_value": 0.5}, "'missing_value' must lie outside [0, 1]", ValueError),
    ("Tversky.v1", {"alpha": -0.1}, "'alpha' must be in [0, inf)", ValueError),
    ("Tversky.v1", {"beta": math.inf}, "'beta' must be in [0, inf)", ValueError),
    ("Tversky.v1", {"alpha": 0.0, "beta": 0.0}, "'alpha' and 'beta' must not both be 0", ValueError),
    ("Tversky.v1", {"average": "weighted"}, "'average' must be one of", ValueError),
    ("AsymmetricLoss.v1", {"gamma_pos": -1.0}, "'gamma_pos' must be in [0, inf)", ValueError),
    ("AsymmetricLoss.v1", {"gamma_neg": math.nan}, "'gamma_neg' must not be NaN", ValueError),
    ("AsymmetricLoss.v1", {"clip": 1.0}, "'clip' must be in [0, 1)", ValueError),
    ("AsymmetricLoss.v1", {"clip": -0.01}, "'clip' must be in [0, 1)", ValueError),
    ("AsymmetricLoss.v1", {"missing_value": 1}, "'missing_value' must lie outside [0, 1]", ValueError),
    ("GeneralizedCrossentropy.v1", {"q": 0.0}, "'q' must be in (0, 1]", ValueError),
    ("GeneralizedCrossentropy.v1", {"q": 1.5}, "'q' must be in (0, 1]", ValueError),
    ("GeneralizedCrossentropy.v1", {"names": ["A", "A"]}, "'names' contains duplicate names", ValueError),
    ("GeneralizedCrossentropy.v1", {"neg_prefix": ""}, "'neg_prefix' must be a non-empty str", TypeError),
    ("GeneralizedCrossentropy.v1", {"class_weights": [1.0, -2.0]}, "'class_weights' must be finite and non-negative", ValueError),
    ("GeneralizedCrossentropy.v1", {"class_weights": {"Z": 1.0}, "names": ["A"]}, "'class_weights' names unknown labels", ValueError),
]


@pytest.mark.parametrize("name,settings,message,error", BAD_SETTINGS, ids=[f"{b[0]}-{sorted(b[1])}" for b in BAD_SETTINGS])
def test_bad_settings_are_refused_naming_the_argument(name, settings, message, error):
    cls = {"Dice.v1": Dice, "Tversky.v1": Tversky, "AsymmetricLoss.v1": AsymmetricLoss, "GeneralizedCrossentropy.v1": GeneralizedCrossentropy}[name]
    with pytest.raises(error) as info:
        cls(**settings)
    assert str(info.value).startswith(f"Cannot create {name.split('.')[0]}: "), str(info.value)
    assert message in str(info.value)


def test_wrong_types_are_refused_by_config_validation_or_by_the_class():
    with pytest.raises(Exception, match="average|str"):
        registry.resolve({"loss": {"@losses": "Dice.v1", "average": ["macro"]}})
    with pytest.raises(TypeError, match="Cannot create Dice: 'squared_denominator' must be a bool"):
        Dice(squared_denominator="yes")
    with pytest.raises(TypeError, match="Cannot create AsymmetricLoss: 'from_logits' must be a bool"):
        AsymmetricLoss(from_logits=1)


SIGMOID_LOSSES = [Dice(), Dice(average="macro"), Tversky(), AsymmetricLoss()]


@pytest.mark.parametrize("calc", SIGMOID_LOSSES, ids=repr)
def test_bad_sigmoid_inputs_name_the_calculator_and_argument(calc):
    guesses, truths = sigmoid_inputs(18)
    name = calc.name
    cases = [
        (guesses * 2, truths, "'guesses' must lie in [0, 1]"),
        (guesses, truths * 3, "'truths' must lie in [0, 1]"),
        (guesses, numpy.where(truths > 0, numpy.nan, truths), "'truths' contains NaN"),
        (guesses, truths[:, :2], "'truths' must have shape"),
        (guesses[None], truths[None], "'guesses' must have shape (N,) or (N, C)"),
        (guesses, -numpy.ones_like(truths), "'truths' must lie in [0, 1]"),  # no missing_value set
    ]
    for g, t, message in cases:
        with pytest.raises(ValueError) as info:
            calc(g, t)
        assert str(info.value).startswith(f"Cannot calculate {name}: "), str(info.value)
        assert message in str(info.value), str(info.value)
    with pytest.raises(TypeError, match=f"Cannot calculate {name}: 'guesses' must have a float dtype"):
        calc(guesses.astype("int64"), truths)
    with pytest.raises(ValueError, match=f"Cannot calculate {name}: 'sample_weight' must be non-negative"):
        calc(guesses, truths, sample_weight=-numpy.ones(N))


def test_bad_label_inputs_name_generalized_crossentropy():
    z, p, y = softmax_inputs(19)
    calc = GeneralizedCrossentropy(names=["A", "B", "C", "D"])
    cases = [
        (p, [7] * N, ValueError, "'truths' contains label 7, outside [0, 4)"),
        (p, ["A"] * (N - 1) + ["Z"], ValueError, "'truths' contains unknown label 'Z'"),
        (p, ["A"] * (N - 1) + [1], TypeError, "'truths' mixes strings with other types"),
        (p, y.astype("float64"), ValueError, "'truths' must have the guesses' shape"),
        (p, y[:-1], ValueError, "'truths' has 6 labels but the guesses have 7 rows"),
        (p * 2, y, ValueError, "'guesses' must lie in [0, 1]"),
        (p[:, :3], y, ValueError, "'names' has 4 entries but the guesses have 3 columns"),
        (z, y, ValueError, "'guesses' must lie in [0, 1]"),
    ]
    for guesses, truths, error, message in cases:
        with pytest.raises(error) as info:
            calc(guesses, truths)
        assert str(info.value).startswith("Cannot calculate GeneralizedCrossentropy: "), str(info.value)
        assert message in str(info.value), str(info.value)
    with pytest.raises(ValueError, match="names were given|no 'names'"):
        GeneralizedCrossentropy()(p, ["A"] * N)
    with pytest.raises(ValueError, match="'missing_value' is '', which can never equal an integer label"):
        GeneralizedCrossentropy(missing_value="")(p, y)


# Memory and blocks (SPEC section 8) -----------------------------------------------------------

MEMORY_CASES = [
    ("AsymmetricLoss.v1", {}),  # the defaults: the paper's settings
    ("AsymmetricLoss.v1", {"from_logits": True}),
    ("AsymmetricLoss.v1", {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05}),
    ("AsymmetricLoss.v1", {"gamma_pos": 1.0, "gamma_neg": 2.5, "clip": 0.0, "from_logits": True}),
    ("AsymmetricLoss.v1", {"gamma_pos": 0.0, "gamma_neg": 0.0, "clip": 0.05}),
    ("Dice.v1", {}),
    ("Dice.v1", {"from_logits": True}),
    ("Dice.v1", {"average": "macro"}),
    ("Dice.v1", {"average": "macro", "from_logits": True}),
    ("Dice.v1", {"average": "macro", "from_logits": True, "self_adjusting": 1.0, "squared_denominator": True}),
    ("Dice.v1", {"self_adjusting": 0.5}),
    ("Tversky.v1", {}),
    ("Tversky.v1", {"average": "macro"}),
    ("Tversky.v1", {"average": "macro", "from_logits": True}),
    ("GeneralizedCrossentropy.v1", {}),
    ("GeneralizedCrossentropy.v1", {"from_logits": True}),
    ("GeneralizedCrossentropy.v1", {"from_logits": True, "class_weights": [0.5 + (i % 4) * 0.5 for i in range(50)]}),
]


def _resolve(name, **config):
    return registry.resolve({"loss": {"@losses": name, **config}})["loss"]


def _big_inputs(name, config, n=4096, c=50):
    rng = numpy.random.default_rng(0)
    z = rng.normal(scale=2.0, size=(n, c)).astype("float32")
    if name == "GeneralizedCrossentropy.v1":
        e = numpy.exp(z - z.max(axis=1, keepdims=True))
        p = (e / e.sum(axis=1, keepdims=True)).astype("float32")
        return (z if config.get("from_logits") else p), rng.integers(0, c, size=n)
    p = (1 / (1 + numpy.exp(-z))).astype("float32")
    t = (rng.uniform(size=(n, c)) < 0.1).astype("float32")
    return (z if config.get("from_logits") else p), t


@pytest.mark.parametrize(
    "name,config", MEMORY_CASES, ids=[f"{n}-" + "-".join(f"{k}" if k == "class_weights" else f"{k}={v}" for k, v in c.items()) for n, c in MEMORY_CASES]
)
def test_peak_memory_of_call_is_near_the_gradient(name, config):
    """SPEC section 8: at most 1.1x the gradient's bytes at 4096x50 (tracemalloc, result included)."""
    from battery import call_memory_ratio

    guesses, truths = _big_inputs(name, config)
    assert call_memory_ratio(_resolve(name, **config), guesses, truths) <= 1.1


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 0.5, 2.5, 9.0])
def test_power_into_is_the_power(exponent):
    from thinc_losses_plus.functional.blocks import power_into

    x = numpy.random.default_rng(0).uniform(0, 1.5, (5, 7))
    numpy.testing.assert_allclose(power_into(numpy, x, exponent, numpy.empty_like(x)), x**exponent, rtol=1e-14)


ASL_SETTINGS = [
    dict(gamma_pos=0.0, gamma_neg=4.0, clip=0.05),
    dict(gamma_pos=1.0, gamma_neg=4.0, clip=0.0),
    dict(gamma_pos=2.0, gamma_neg=0.0, clip=0.05),
    dict(gamma_pos=0.5, gamma_neg=2.5, clip=0.1),
    dict(gamma_pos=0.0, gamma_neg=0.0, clip=0.0),
]


@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("setting", ASL_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("want_grad", [True, False])
def test_asymmetric_blocks_equal_one_pass_over_the_whole_array(logits, setting, want_grad):
    """The blocked maths (many blocks, scratch borrowed from the gradient) has the bits of the
    elementwise maths run once on the whole arrays, with fresh arrays, then weighted and reduced."""
    from thinc_losses_plus.functional import asymmetric as F
    from thinc_losses_plus.functional.blocks import row_total

    rng = numpy.random.default_rng(3)
    n, c = 3000, 23  # dozens of blocks
    x = rng.normal(0, 3, (n, c)) if logits else rng.uniform(0, 1, (n, c))
    if not logits:
        x[0, :4] = [0.0, 1.0, setting["clip"], 0.5]
    t = rng.uniform(0, 1, (n, c))
    t[: n // 2] = t[: n // 2] > 0.7
    w = rng.uniform(0, 2, (n, 1))
    blocked = (F.asymmetric_loss_with_logits if logits else F.asymmetric_loss)(
        numpy, x, t, weights=w, divisor=7.0, want_grad=want_grad, **setting
    )
    maths = F.asymmetric_terms_with_logits if logits else F.asymmetric_terms
    with numpy.errstate(all="ignore"):
        grad, loss = maths(numpy, x, t, want_grad=want_grad, **setting)
    numpy.testing.assert_array_equal(blocked[1], row_total(numpy, loss, w))
    if want_grad:
        grad *= w
        numpy.testing.assert_array_equal(blocked[0], numpy.divide(grad, 7.0))
    else:
        assert blocked[0] is None


def _one_block(monkeypatch):
    """Make the overlap losses' row blocks one block over the whole array, with fresh scratch."""
    from thinc_losses_plus.functional import overlap as F

    def one_block(xp, work, n_slots):
        yield slice(0, work.shape[0]), [xp.empty_like(work) for _ in range(n_slots)]

    monkeypatch.setattr(F, "scratch_blocks", one_block)


@pytest.mark.parametrize("average", ["samples", "macro"])
@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize(
    "cls,setting",
    [(Dice, {}), (Dice, {"squared_denominator": True}), (Dice, {"self_adjusting": 0.5}),
     (Dice, {"self_adjusting": 2.0, "squared_denominator": True}), (Tversky, {}), (Tversky, {"alpha": 1.0, "beta": 0.0})],
    ids=["dice", "squared", "adjusting-0.5", "adjusting-2-squared", "tversky", "tversky-1-0"],
)
@pytest.mark.parametrize("weighted", ["none", "rows", "elements"])
def test_overlap_blocks_equal_one_block(monkeypatch, average, logits, cls, setting, weighted):
    """Many row blocks (the column sums of "macro" summed block by block) give the numbers of
    one block over the whole array, to float64 rounding."""
    rng = numpy.random.default_rng(4)
    n, c = 3000, 23
    guesses = rng.normal(0, 3, (n, c)) if logits else rng.uniform(0, 1, (n, c))
    truths = rng.uniform(0, 1, (n, c))
    weights = {"none": None, "rows": rng.uniform(0, 2, n), "elements": rng.uniform(0, 2, (n, c))}[weighted]
    calc = cls(average=average, from_logits=logits, **setting)
    grad, loss = calc(guesses, truths, sample_weight=weights)
    per_example = calc.get_loss_per_example(guesses, truths, sample_weight=weights)
    _one_block(monkeypatch)
    grad_1, loss_1 = calc(guesses, truths, sample_weight=weights)
    numpy.testing.assert_allclose(loss, loss_1, rtol=1e-12)
    # entries where t A + B nearly cancels are to the gradient's scale, not their own
    numpy.testing.assert_allclose(grad, grad_1, rtol=1e-12, atol=1e-12 * numpy.abs(grad_1).max())
    numpy.testing.assert_allclose(per_example, calc.get_loss_per_example(guesses, truths, sample_weight=weights), rtol=1e-12)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("extras", ["plain", "weights", "negative-missing"])
def test_gce_blocks_equal_one_block(monkeypatch, from_logits, extras):
    """The row blocks of the integer-label GCE change no bit."""
    from thinc_losses_plus.functional import generalized_cross_entropy as F

    rng = numpy.random.default_rng(5)
    n, names = 3000, ["A", "B", "C", "D"]
    z = rng.normal(0, 2, (n, 4))
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    guesses = z if from_logits else e / e.sum(axis=1, keepdims=True)
    labels = [names[i] for i in rng.integers(0, 4, n)]
    settings, kwargs = {}, {}
    if extras == "weights":
        settings["class_weights"] = [0.5, 2.0, 1.0, 3.0]
        kwargs["sample_weight"] = rng.uniform(0, 2, n)
    if extras == "negative-missing":
        settings.update(neg_prefix="!", missing_value="-")
        labels = ["!" + y if i % 3 == 1 else ("-" if i % 7 == 2 else y) for i, y in enumerate(labels)]
    calc = GeneralizedCrossentropy(names=names, from_logits=from_logits, **settings)
    grad, loss = calc(guesses, labels, **kwargs)
    per_example = calc.get_loss_per_example(guesses, labels, **kwargs)
    assert len(list(F.gce_row_blocks(n))) > 1
    monkeypatch.setattr(F, "GCE_MIN_ROWS", n)
    grad_1, loss_1 = calc(guesses, labels, **kwargs)
    assert len(list(F.gce_row_blocks(n))) == 1
    assert loss == loss_1
    numpy.testing.assert_array_equal(grad, grad_1)
    numpy.testing.assert_array_equal(per_example, calc.get_loss_per_example(guesses, labels, **kwargs))
