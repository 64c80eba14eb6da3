"""The softmax family against Thinc's own losses, PyTorch and hand-worked numbers."""
import math

import numpy
import pytest
import thinc.loss
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from thinc.api import registry
from thinc.types import Ragged

from conftest import to_numpy
from thinc_losses_plus import (
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    KLDivergence,
    SequenceCategoricalCrossentropy,
    SparseCategoricalCrossentropy,
)

NAMES = ["A", "B", "C", "D", "E"]
torch.set_default_dtype(torch.float64)


def softmax(z):
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def batch(seed=0, n=16, c=5, dtype="float32", scale=2.0):
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n, c))
    return z, softmax(z).astype(dtype), rng.integers(0, c, size=n)


def thinc_v3(**settings):
    return registry.resolve({"loss": {"@losses": "CategoricalCrossentropy.v3", **settings}})["loss"]


# Thinc's gradient, bit for bit ------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sparse_int_gradient_is_thincs_bit_for_bit(xp, normalize, smoothing):
    _, p, y = batch()
    ours = SparseCategoricalCrossentropy(normalize=normalize, label_smoothing=smoothing)
    theirs = thinc_v3(normalize=normalize, label_smoothing=smoothing)
    grad, _ = ours(xp.asarray(p), xp.asarray(y))
    expected = theirs.get_grad(xp.asarray(p), xp.asarray(y.astype("int32")))
    assert grad.dtype == expected.dtype
    assert numpy.array_equal(to_numpy(grad), to_numpy(expected))


def test_sparse_names_missing_negative_gradient_is_thincs(xp):
    _, p, y = batch(n=12)
    truths = [NAMES[i] for i in y]
    truths[1] = "-"  # missing
    truths[4] = "!" + truths[4]  # "not this class"
    truths[7] = "!" + truths[7]
    settings = dict(names=NAMES, missing_value="-", neg_prefix="!")
    grad, loss = SparseCategoricalCrossentropy(**settings)(xp.asarray(p), truths)
    expected = thinc_v3(**settings).get_grad(xp.asarray(p), truths)
    assert numpy.array_equal(to_numpy(grad), to_numpy(expected))
    # v4 loss: -sum(t * log(p + 1e-9) * mask) / n; negative and missing rows add 0.
    rows = [i for i in range(12) if i not in (1, 4, 7)]
    expected_loss = -sum(math.log(float(p[i, y[i]]) + 1e-9) for i in rows) / 12
    assert loss == pytest.approx(expected_loss, rel=1e-6)


def test_dense_gradient_is_thincs_and_loss_is_cross_entropy(xp):
    _, p, y = batch(seed=1)
    _, t, _ = batch(seed=2)
    for truths in (numpy.eye(5, dtype="f")[y], t):
        grad, loss = CategoricalCrossentropy()(xp.asarray(p), xp.asarray(truths))
        thinc_grad = thinc_v3().get_grad(xp.asarray(p), xp.asarray(truths))
        assert numpy.array_equal(to_numpy(grad), to_numpy(thinc_grad))
        expected = -(truths.astype("f8") * numpy.log(p.astype("f8") + 1e-9)).sum() / len(p)
        assert loss == pytest.approx(expected, rel=1e-6)
        # Thinc v1-v3 report sum(grad**2), which is not the cross-entropy.
        assert thinc_v3().get_loss(p, truths) != pytest.approx(loss, rel=1e-2)


def test_dense_missing_value_masks_rows_like_thinc(xp):
    _, p, y = batch(seed=3)
    truths = numpy.eye(5, dtype="f")[y]
    grad, _ = CategoricalCrossentropy(missing_value=2)(xp.asarray(p), xp.asarray(truths))
    # Thinc's class directly: under Thinc 9.1 its registered v3 receives missing_value="2"
    # from config validation and then masks nothing.
    expected = thinc.loss.CategoricalCrossentropy(missing_value=2).get_grad(xp.asarray(p), xp.asarray(truths))
    assert numpy.array_equal(to_numpy(grad), to_numpy(expected))
    assert not to_numpy(grad)[y == 2].any()


def test_sequence_gradient_is_thincs(xp):
    rng = numpy.random.default_rng(4)
    guesses = [xp.asarray(softmax(rng.normal(size=(t, 5))).astype("f")) for t in (3, 1, 4)]
    truths = [[NAMES[i] for i in rng.integers(0, 5, size=g.shape[0])] for g in guesses]
    truths[0][1] = None  # spaCy passes None for unannotated tokens
    ours = SequenceCategoricalCrossentropy(names=NAMES)
    theirs = registry.resolve({"l": {"@losses": "SequenceCategoricalCrossentropy.v3", "names": NAMES}})["l"]
    grads, loss = ours(guesses, truths)
    for a, b in zip(grads, theirs.get_grad(guesses, truths)):
        assert numpy.array_equal(to_numpy(a), to_numpy(b))
    expected = -sum(
        math.log(float(g[i, NAMES.index(t)]) + 1e-9)
        for g, ts in zip(guesses, truths)
        for i, t in enumerate(ts)
        if t is not None
    )
    assert loss == pytest.approx(expected, rel=1e-6)
    assert ours([], []) == ([], 0.0)


@pytest.mark.parametrize("missing_value", [-1, "-1"])
def test_integer_string_missing_value_masks_integer_labels(missing_value):
    """Thinc 9.1's config validation delivers an int missing_value as a string."""
    resolved = registry.resolve({"l": {"@losses": "SparseCategoricalCrossentropy.v4", "missing_value": missing_value}})["l"]
    _, p, y = batch(seed=14)
    truths = numpy.where(numpy.arange(16) % 4 == 0, -1, y)
    grad, _ = resolved(p, truths)
    assert not grad[::4].any() and grad[1::4].any()
    # and for string labels the same setting matches the label "-1"
    named = SparseCategoricalCrossentropy(names=NAMES, missing_value=missing_value)
    grad, _ = named(p[:2], ["-1", "A"])
    assert not grad[0].any() and grad[1].any()


def test_sparse_equals_dense_onehot_bit_for_bit(xp):
    _, p, y = batch(seed=5)
    sparse = SparseCategoricalCrossentropy()(xp.asarray(p), xp.asarray(y))
    dense = CategoricalCrossentropy()(xp.asarray(p), xp.asarray(numpy.eye(5, dtype="f")[y]))
    assert numpy.array_equal(to_numpy(sparse[0]), to_numpy(dense[0]))
    assert sparse[1] == pytest.approx(dense[1], rel=1e-7)


# Hand-worked numbers -----------------------------------------------------------


def test_hand_worked_sparse_with_smoothing_and_weights():
    p = numpy.asarray([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float64")
    loss_calc = SparseCategoricalCrossentropy(label_smoothing=0.2, class_weights=[1.0, 2.0, 0.5])
    grad, loss = loss_calc(p, [0, 2])
    # Row 0: t = [0.8, 0.1, 0.1], w*t = [0.8, 0.2, 0.05], S = 1.05
    # Row 1: t = [0.1, 0.1, 0.8], w*t = [0.1, 0.2, 0.4],  S = 0.7
    row0 = -(0.8 * math.log(0.7 + 1e-9) + 0.2 * math.log(0.2 + 1e-9) + 0.05 * math.log(0.1 + 1e-9))
    row1 = -(0.1 * math.log(0.1 + 1e-9) + 0.2 * math.log(0.1 + 1e-9) + 0.4 * math.log(0.8 + 1e-9))
    assert loss == pytest.approx((row0 + row1) / 2, rel=1e-12)
    expected = numpy.asarray(
        [[0.7 * 1.05 - 0.8, 0.2 * 1.05 - 0.2, 0.1 * 1.05 - 0.05], [0.1 * 0.7 - 0.1, 0.1 * 0.7 - 0.2, 0.8 * 0.7 - 0.4]]
    ) / 2
    numpy.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)


def test_hand_worked_negative_label():
    p = numpy.asarray([[0.6, 0.3, 0.1]])
    grad, loss = SparseCategoricalCrossentropy(names=["x", "y", "z"], neg_prefix="!")(p, ["!x"])
    assert grad.tolist() == [[0.6, 0.0, 0.0]]  # p_x on the excluded column, masked elsewhere
    assert loss == 0.0


# PyTorch as the oracle -----------------------------------------------------------


def torch_grad(fn, z):
    zt = torch.tensor(z, requires_grad=True)
    loss = fn(zt)
    loss.backward()
    return loss.item(), zt.grad.numpy()


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5, 3.0, 0.0]])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("from_logits", [True, False])
def test_sparse_matches_torch_cross_entropy(xp, weights, smoothing, from_logits):
    z, p, y = batch(seed=6, n=32, dtype="float32")
    c = z.shape[1]
    loss_calc = SparseCategoricalCrossentropy(label_smoothing=smoothing, class_weights=weights, from_logits=from_logits)
    guesses = z.astype("f") if from_logits else p
    grad, loss = loss_calc(xp.asarray(guesses), xp.asarray(y))
    w = None if weights is None else torch.tensor(weights)
    # PyTorch's smoothing e' spreads e'/C on every class: e' = e * C / (C - 1).
    torch_loss, torch_g = torch_grad(
        lambda t: F.cross_entropy(
            t, torch.tensor(y), weight=w, label_smoothing=smoothing * c / (c - 1), reduction="sum"
        ) / len(y),
        guesses.astype("f8") if from_logits else numpy.log(p.astype("f8")),
    )
    assert loss == pytest.approx(torch_loss, rel=1e-5, abs=1e-6)
    numpy.testing.assert_allclose(to_numpy(grad), torch_g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weights", [None, [0.5, 1.0, 2.0, 1.5, 1.0]])
def test_dense_matches_torch_probability_targets(xp, weights):
    z, _, _ = batch(seed=7, n=24)
    _, t, _ = batch(seed=8, n=24)
    loss_calc = CategoricalCrossentropy(from_logits=True, class_weights=weights)
    grad, loss = loss_calc(xp.asarray(z.astype("f")), xp.asarray(t))
    w = None if weights is None else torch.tensor(weights)
    torch_loss, torch_g = torch_grad(
        lambda zt: F.cross_entropy(zt, torch.tensor(t.astype("f8")), weight=w, reduction="sum") / 24, z
    )
    assert loss == pytest.approx(torch_loss, rel=1e-5)
    numpy.testing.assert_allclose(to_numpy(grad), torch_g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_kl_matches_torch_kl_div(xp, temperature):
    z, _, _ = batch(seed=9, n=20)
    _, t, _ = batch(seed=10, n=20, dtype="float64")
    grad, loss = KLDivergence(from_logits=True, temperature=temperature)(xp.asarray(z), xp.asarray(t))
    torch_loss, torch_g = torch_grad(
        lambda zt: F.kl_div(F.log_softmax(zt / temperature, dim=1), torch.tensor(t), reduction="sum")
        * temperature**2
        / 20,
        z,
    )
    assert loss == pytest.approx(torch_loss, rel=1e-10)
    numpy.testing.assert_allclose(to_numpy(grad), torch_g, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_matches_torch_autograd(xp, gamma):
    z, _, y = batch(seed=11, n=20)
    weights = numpy.asarray([1.0, 2.0, 0.5, 1.5, 1.0])
    loss_calc = CategoricalFocalCrossentropy(gamma=gamma, alpha=0.25, class_weights=weights.tolist(), from_logits=True)
    grad, loss = loss_calc(xp.asarray(z), xp.asarray(y))

    def focal(zt):
        logp = F.log_softmax(zt, dim=1)
        logp_y = logp[torch.arange(20), torch.tensor(y)]
        w_y = torch.tensor(weights)[torch.tensor(y)]
        return -(0.25 * w_y * (1 - logp_y.exp()) ** gamma * logp_y).sum() / 20

    torch_loss, torch_g = torch_grad(focal, z)
    assert loss == pytest.approx(torch_loss, rel=1e-10)
    numpy.testing.assert_allclose(to_numpy(grad), torch_g, rtol=1e-8, atol=1e-12)


def test_focal_with_gamma_zero_is_cross_entropy(xp):
    _, p, y = batch(seed=12, dtype="float64")
    focal = CategoricalFocalCrossentropy(gamma=0.0)(xp.asarray(p), xp.asarray(y))
    plain = SparseCategoricalCrossentropy()(xp.asarray(p), xp.asarray(y))
    assert focal[1] == pytest.approx(plain[1], rel=1e-12)
    numpy.testing.assert_allclose(to_numpy(focal[0]), to_numpy(plain[0]), rtol=1e-9, atol=1e-15)


# Properties -----------------------------------------------------------------------

label_batches = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.integers(2, 7),
        st.integers(0, 2**32 - 1),
        st.floats(0.1, 20.0),
    )
)


@settings(max_examples=60, deadline=None)
@given(label_batches, st.booleans())
def test_property_missing_rows_contribute_nothing(params, from_logits):
    n, c, seed, scale = params
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n, c))
    guesses = z if from_logits else softmax(z)
    labels = rng.integers(0, c, size=n)
    missing = rng.random(n) < 0.4
    truths = numpy.where(missing, -1, labels)
    loss_calc = SparseCategoricalCrossentropy(missing_value=-1, from_logits=from_logits, normalize=False)
    grad, loss = loss_calc(guesses, truths)
    assert not grad[missing].any()
    kept = ~missing
    if kept.any():
        sub_grad, sub_loss = loss_calc(guesses[kept], labels[kept])
        assert loss == pytest.approx(sub_loss, rel=1e-12, abs=1e-12)
        if from_logits:  # the softmax shift is the batch's max: equal up to rounding
            numpy.testing.assert_allclose(grad[kept], sub_grad, rtol=1e-12, atol=1e-15)
        else:
            assert numpy.array_equal(grad[kept], sub_grad)
    else:
        assert loss == 0.0


@settings(max_examples=60, deadline=None)
@given(label_batches)
def test_property_logits_and_probabilities_agree(params):
    n, c, seed, scale = params
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n, c))
    labels = rng.integers(0, c, size=n)
    from_logits = SparseCategoricalCrossentropy(from_logits=True)(z, labels)
    from_probs = SparseCategoricalCrossentropy()(softmax(z), labels)
    numpy.testing.assert_allclose(from_logits[0], from_probs[0], rtol=1e-9, atol=1e-12)
    # the probability path guards log(p + 1e-9); the logits path is exact
    assert from_probs[1] <= from_logits[1] + 1e-12
    # log(p) - log(p + eps) <= eps / p for each row
    bound = (1e-9 / softmax(z)[numpy.arange(n), labels]).mean()
    assert from_logits[1] - from_probs[1] <= bound * (1 + 1e-6) + 1e-12


@settings(max_examples=60, deadline=None)
@given(label_batches, st.floats(0.0, 0.8))
def test_property_class_weights_are_pytorch_weighted_rows(params, smoothing_fraction):
    n, c, seed, scale = params
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n, c))
    labels = rng.integers(0, c, size=n)
    weights = rng.uniform(0.0, 3.0, size=c)
    loss_calc = SparseCategoricalCrossentropy(from_logits=True, class_weights=weights.tolist(), normalize=False)
    per_row = loss_calc.get_loss_per_example(z, labels)
    unweighted = SparseCategoricalCrossentropy(from_logits=True, normalize=False).get_loss_per_example(z, labels)
    # for an unsmoothed integer label y the row loss is w_y times the unweighted row
    numpy.testing.assert_allclose(per_row, weights[labels] * unweighted, rtol=1e-12, atol=1e-300)


@settings(max_examples=40, deadline=None)
@given(label_batches)
def test_property_ragged_divides_by_sequences(params):
    n, c, seed, scale = params
    rng = numpy.random.default_rng(seed)
    lengths = rng.integers(1, 4, size=n).astype("int32")
    rows = int(lengths.sum())
    p = softmax(rng.normal(scale=scale, size=(rows, c)))
    labels = rng.integers(0, c, size=rows)
    grad, loss = SparseCategoricalCrossentropy()(Ragged(p, lengths), labels)
    flat_grad, flat_loss = SparseCategoricalCrossentropy(normalize=False)(p, labels)
    assert isinstance(grad, Ragged) and numpy.array_equal(grad.lengths, lengths)
    numpy.testing.assert_allclose(grad.dataXd, flat_grad / n, rtol=1e-12)
    assert loss == pytest.approx(flat_loss / n, rel=1e-12)


# Stability and dtypes --------------------------------------------------------------


@pytest.mark.parametrize(
    "loss_calc",
    [
        SparseCategoricalCrossentropy(from_logits=True),
        SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.1, class_weights=[1, 2, 3]),
        CategoricalFocalCrossentropy(from_logits=True),
        CategoricalFocalCrossentropy(from_logits=True, gamma=0.5),
    ],
    ids=repr,
)
def test_extreme_logits_give_finite_results(xp, loss_calc):
    z = xp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4]], dtype="float32")
    grad, loss = loss_calc(z, xp.asarray([1, 0, 2]))
    assert math.isfinite(loss) and loss > 1e3  # confidently wrong rows cost ~1e4
    assert bool(xp.isfinite(grad).all())


@pytest.mark.parametrize("loss_calc", [CategoricalCrossentropy(from_logits=True), KLDivergence(from_logits=True)], ids=repr)
def test_extreme_logits_dense(xp, loss_calc):
    z = xp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype="float32")
    t = xp.asarray([[0.0, 1.0, 0.0], [0.5, 0.25, 0.25]], dtype="float32")
    grad, loss = loss_calc(z, t)
    assert math.isfinite(loss) and bool(xp.isfinite(grad).all())


def test_probabilities_of_exactly_zero_and_one(xp):
    p = xp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype="float32")
    # Row 0 is certain and right (loss ~0), row 1 certain and wrong: -log(0 + 1e-9).
    for loss_calc in (SparseCategoricalCrossentropy(), CategoricalFocalCrossentropy(), CategoricalFocalCrossentropy(gamma=0.5)):
        grad, loss = loss_calc(p, xp.asarray([0, 2]))
        assert loss == pytest.approx(-math.log(1e-9) / 2, rel=1e-4)
        assert bool(xp.isfinite(grad).all())


def test_float16_guesses_accumulate_in_float32(xp):
    _, p, y = batch(seed=13, n=64, dtype="float16")
    grad, loss = SparseCategoricalCrossentropy()(xp.asarray(p), xp.asarray(y))
    assert grad.dtype == numpy.float16
    # The float16-rounded rows are no float64 distributions: apply the formula directly.
    p64 = p.astype("f8")
    exact_loss = -numpy.log(p64[numpy.arange(64), y] + 1e-9).mean()
    exact_grad = (p64 - numpy.eye(5)[y]) / 64
    assert loss == pytest.approx(exact_loss, rel=1e-6)
    numpy.testing.assert_allclose(to_numpy(grad).astype("f8"), exact_grad, rtol=1e-3, atol=1e-7)


def test_with_names_supplies_component_labels():
    base = SparseCategoricalCrossentropy(label_smoothing=0.1)
    named = base.with_names(["x", "y"])
    assert named.names == ["x", "y"] and base.names is None
    expected = -(0.9 * math.log(0.5 + 1e-9) + 0.1 * math.log(0.5 + 1e-9))
    assert named.get_loss(numpy.asarray([[0.5, 0.5]]), ["y"]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="SparseCategoricalCrossentropy.*'names'"):
        SparseCategoricalCrossentropy(names=["a", "b"]).with_names(["x", "y"])
    assert SequenceCategoricalCrossentropy().with_names(["x", "y"]).names == ["x", "y"]
    weighted = CategoricalCrossentropy(class_weights={"y": 2.0}).with_names(["x", "y"])
    assert weighted.names == ["x", "y"]
    grad, loss = weighted(numpy.asarray([[0.5, 0.5]]), numpy.asarray([[0.0, 1.0]]))
    assert loss == pytest.approx(-2.0 * math.log(0.5 + 1e-9))
    with pytest.raises(ValueError, match=r"CategoricalCrossentropy: 'class_weights' names unknown labels: \['y'\]"):
        CategoricalCrossentropy(class_weights={"y": 2.0}).with_names(["a", "b"])


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
def test_focal_integer_label_kernel_equals_the_dense_formula(xp, from_logits, gamma):
    """Labels take an O(N) kernel; one-hot dense truths take the general one."""
    z, p, y = batch(seed=15, n=32, dtype="float64")
    truths = [NAMES[i] for i in y]
    truths[3], truths[7] = "-", "!" + truths[7]
    dense_truths = numpy.eye(5)[y]
    guesses = xp.asarray(z if from_logits else p)
    settings = dict(gamma=gamma, alpha=0.5, class_weights=[1.0, 2.0, 0.5, 1.5, 1.0], from_logits=from_logits)
    sparse = CategoricalFocalCrossentropy(names=NAMES, missing_value="-", neg_prefix="!", **settings)
    grad, _ = sparse(guesses, truths)
    per_row = to_numpy(sparse.get_loss_per_example(guesses, truths))
    dense = CategoricalFocalCrossentropy(**settings)
    dense_grad = to_numpy(dense.get_grad(guesses, xp.asarray(dense_truths)))
    dense_rows = to_numpy(dense.get_loss_per_example(guesses, xp.asarray(dense_truths)))
    plain = [i for i in range(32) if i not in (3, 7)]
    numpy.testing.assert_allclose(to_numpy(grad)[plain], dense_grad[plain], rtol=1e-10, atol=1e-15)
    numpy.testing.assert_allclose(per_row[plain], dense_rows[plain], rtol=1e-12)
    assert per_row[3] == 0.0 and not to_numpy(grad)[3].any()
    # "not y": -alpha w_y p_y^gamma log(1 - p_y), gradient on column y only
    p7 = softmax(z)[7] if from_logits else p[7]
    w = 0.5 * settings["class_weights"][y[7]]
    assert per_row[7] == pytest.approx(-w * p7[y[7]] ** gamma * math.log(1 - p7[y[7]] + 1e-9), rel=1e-9)
    assert numpy.count_nonzero(to_numpy(grad)[7]) == 1
