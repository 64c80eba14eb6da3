"""Embedding family (cosine distance, cosine embedding, triplet margin): PyTorch
as the oracle, Thinc's CosineDistance.v1, hand-worked values, properties,
zero vectors and extreme inputs (1e20 in float32 included), and bad inputs
(SPEC sections 4 and 7). MaximumMeanDiscrepancy: tests/test_embedding_mmd.py.

PyTorch's losses default to the mean over rows; ours divide the sum by N as
well, so the oracle is ``reduction="sum"`` (or the summed per-row values)
divided by N, and its gradient is autograd's of that.
"""
import numpy
import pytest
import thinc.loss
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from thinc.api import registry
from thinc.config import ConfigValidationError
from thinc.types import Ragged

from conftest import to_numpy
from thinc_losses_plus import CosineDistance, CosineEmbedding, MaximumMeanDiscrepancy, TripletMargin
from thinc_losses_plus._core import Evaluation, LossCalculator
from thinc_losses_plus.functional import embedding as FE

TOL = {"float32": dict(rtol=3e-5, atol=3e-6), "float64": dict(rtol=1e-10, atol=1e-12)}


def resolve(name, **settings):
    return registry.resolve({"loss": {"@losses": name, **settings}})["loss"]


def torch_oracle(fn, tensors, *, n, grad_of):
    """``fn(*tensors) / n`` (a sum over rows) and autograd's gradient of it."""
    leaves = [torch.tensor(t, requires_grad=True) for t in tensors]
    loss = fn(*leaves) / n
    loss.backward()
    return float(loss.detach()), [leaves[i].grad.numpy() for i in grad_of]


def assert_close(ours, expected, dtype):
    numpy.testing.assert_allclose(to_numpy(ours), expected, **TOL[dtype])


def rows(shape, *, seed=0, scale=1.0, count=2):
    rng = numpy.random.default_rng(seed)
    return [rng.normal(scale=scale, size=shape) for _ in range(count)]


# CosineDistance.v2 -----------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("eps", [1e-8, 0.05])
def test_cosine_distance_matches_torch(dtype, eps, xp):
    g, t = (a.astype(dtype) for a in rows((41, 7)))
    n = len(g)
    expected_loss, (expected_grad,) = torch_oracle(
        lambda a, b: (1.0 - F.cosine_similarity(a, b, dim=1, eps=eps)).sum(), (g, t), n=n, grad_of=[0]
    )
    grad, loss = resolve("CosineDistance.v2", eps=eps)(xp.asarray(g), xp.asarray(t))
    assert loss == pytest.approx(expected_loss, **{"rel": TOL[dtype]["rtol"], "abs": TOL[dtype]["atol"]})
    assert_close(grad, expected_grad, dtype)
    grad_s, loss_s = resolve("CosineDistance.v2", eps=eps, normalize=False)(xp.asarray(g), xp.asarray(t))
    assert loss_s == pytest.approx(expected_loss * n, rel=TOL[dtype]["rtol"])
    assert_close(grad_s, expected_grad * n, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cosine_distance_clamped_norms_match_torch_values(dtype, xp):
    """Below eps the norm is clamped: the loss is PyTorch's; the gradient is the
    exact derivative of the clamped formula (autograd's differs there: PyTorch
    clamps the norms outside the graph), checked against float64 finite differences."""
    g, t = (a.astype(dtype) for a in rows((9, 4), scale=0.05))
    eps = 0.1
    expected = 1.0 - F.cosine_similarity(torch.tensor(g), torch.tensor(t), dim=1, eps=eps).numpy()
    per_example = CosineDistance(eps=eps).get_loss_per_example(xp.asarray(g), xp.asarray(t))
    assert_close(per_example, expected, dtype)
    # Where |g| < eps the cosine is linear in g: d/dg = t / (eps * max(|t|, eps)).
    g64, t64 = g.astype("float64"), t.astype("float64")
    grad = to_numpy(CosineDistance(eps=eps, normalize=False).get_grad(xp.asarray(g64), xp.asarray(t64)))
    small = numpy.linalg.norm(g64, axis=1) < eps
    assert small.any()
    expected_grad = -t64 / (eps * numpy.maximum(numpy.linalg.norm(t64, axis=1), eps))[:, None]
    numpy.testing.assert_allclose(grad[small], expected_grad[small], rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cosine_distance_ignore_zeros_matches_torch_over_kept_rows(dtype, xp):
    g, t = (a.astype(dtype) for a in rows((12, 5), seed=3))
    t[[1, 4, 5]] = 0.0
    keep = numpy.ones(12, dtype=bool)
    keep[[1, 4, 5]] = False
    mask = torch.tensor(keep.astype(dtype))
    expected_loss, (expected_grad,) = torch_oracle(
        lambda a, b: ((1.0 - F.cosine_similarity(a, b, dim=1)) * mask).sum(), (g, t), n=9, grad_of=[0]
    )
    loss_calc = resolve("CosineDistance.v2", ignore_zeros=True)
    grad, loss = loss_calc(xp.asarray(g), xp.asarray(t))
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"])
    assert_close(grad, expected_grad, dtype)
    assert not to_numpy(grad)[~keep].any()
    per_example = to_numpy(loss_calc.get_loss_per_example(xp.asarray(g), xp.asarray(t)))
    assert not per_example[~keep].any()
    # Without ignore_zeros a zero truth costs 1 and has a zero gradient; N counts every row.
    grad_all, loss_all = resolve("CosineDistance.v2")(xp.asarray(g), xp.asarray(t))
    assert loss_all == pytest.approx((expected_loss * 9 + 3) / 12, rel=TOL[dtype]["rtol"])
    assert not to_numpy(grad_all)[~keep].any()
    assert_close(to_numpy(grad_all)[keep], expected_grad[keep] * 9 / 12, dtype)


def test_cosine_distance_ignore_zeros_with_weights_and_all_rows_ignored(xp):
    g = xp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = xp.asarray([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    w = xp.asarray([2.0, 5.0, 3.0])
    grad, loss = CosineDistance(ignore_zeros=True)(g, t, sample_weight=w)
    # Row 0: 2 * (1 - 0), row 1 ignored, row 2: 3 * (1 - 1); two kept rows.
    assert loss == pytest.approx(1.0)
    numpy.testing.assert_allclose(to_numpy(grad), [[0.0, -1.0], [0.0, 0.0], [0.0, 0.0]], atol=1e-15)
    # Every truth zero: nothing to learn, loss 0 and a zero gradient (no division by 0).
    grad, loss = CosineDistance(ignore_zeros=True)(g, xp.zeros((3, 2)))
    assert loss == 0.0 and isinstance(loss, float)
    assert not to_numpy(grad).any()


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cosine_distance_v2_agrees_with_thinc_v1(normalize, dtype, xp):
    """Thinc's v1 adds 1e-8 to every element of both arrays; on vectors of
    norm ~1 that moves the cosine and its gradient by ~1e-8, so the two agree
    to ~1e-7. v1's loss is |cos - 1| = 1 - cos, the same quantity."""
    g, t = (xp.asarray(a.astype(dtype)) for a in rows((33, 6), seed=5))
    v1, v2 = thinc.loss.CosineDistance(normalize=normalize), CosineDistance(normalize=normalize)
    grad, loss = v2(g, t)
    numpy.testing.assert_allclose(to_numpy(grad), to_numpy(v1.get_grad(g, t)), rtol=1e-5, atol=1e-7)
    assert loss == pytest.approx(float(v1.get_loss(g, t)), rel=1e-6)


def test_cosine_distance_v2_ignore_zeros_divides_by_kept_rows_unlike_v1(xp):
    """v1 zeroes ignored rows but still divides by all N rows; v2 divides by
    the kept rows: v2 = v1 * N / kept (to v1's 1e-8 shift)."""
    g, t = (a for a in rows((10, 4), seed=6))
    t[[0, 7]] = 0.0
    g, t = xp.asarray(g), xp.asarray(t)
    v1, v2 = thinc.loss.CosineDistance(ignore_zeros=True), CosineDistance(ignore_zeros=True)
    grad, loss = v2(g, t)
    numpy.testing.assert_allclose(to_numpy(grad), to_numpy(v1.get_grad(g, t)) * 10 / 8, rtol=1e-6, atol=1e-9)
    assert loss == pytest.approx(float(v1.get_loss(g, t)) * 10 / 8, rel=1e-6)


def test_thinc_cosine_distance_v1_still_resolves_to_thinc():
    loss_calc = resolve("CosineDistance.v1")
    assert type(loss_calc) is thinc.loss.CosineDistance
    assert type(resolve("CosineDistance.v2")) is CosineDistance
    with pytest.raises(ConfigValidationError):  # v1 never had eps
        resolve("CosineDistance.v1", eps=0.1)


def test_cosine_distance_hand_worked(xp):
    g = xp.asarray([[3.0, 4.0], [1.0, 0.0]])
    t = xp.asarray([[4.0, 3.0], [-2.0, 0.0]])
    grad, loss = CosineDistance(normalize=False)(g, t)
    # Row 0: cos = 24 / 25; row 1: cos = -1 (loss 2, gradient along t cancels: 0).
    assert loss == pytest.approx((1 - 24 / 25) + 2.0, rel=1e-15)
    # d/dg = (c g / |g| - t / |t|) / |g| = (0.96 * (0.6, 0.8) - (0.8, 0.6)) / 5
    numpy.testing.assert_allclose(to_numpy(grad), [[(0.576 - 0.8) / 5, (0.768 - 0.6) / 5], [0.0, 0.0]], atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cosine_distance_zero_vectors_are_finite(dtype, xp):
    g = xp.asarray([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0]], dtype=dtype)
    t = xp.asarray([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]], dtype=dtype)
    grad, loss = CosineDistance(normalize=False)(g, t)
    assert loss == pytest.approx(3.0)  # every cosine is 0
    grad = to_numpy(grad)
    assert numpy.isfinite(grad).all()
    # At g = 0 the clamped cosine g.t / (eps |t|) has gradient t / (eps |t|).
    numpy.testing.assert_allclose(grad[1], [-0.6e8, -0.8e8], rtol=1e-6)
    assert not grad[[0, 2]].any()


def test_cosine_distance_extreme_magnitudes(xp):
    rng = numpy.random.default_rng(2)
    g, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    expected = CosineDistance().get_loss(xp.asarray(g), xp.asarray(t))
    for scale, dtype in [(1e15, "float32"), (1e-3, "float32"), (1e150, "float64"), (1e-140, "float64")]:
        gs, ts = xp.asarray((g * scale).astype(dtype)), xp.asarray((t * scale).astype(dtype))
        grad, loss = CosineDistance(eps=1e-300 if dtype == "float64" else 1e-8)(gs, ts)
        assert loss == pytest.approx(expected, rel=1e-4)
        assert numpy.isfinite(to_numpy(grad)).all()


@settings(max_examples=60, deadline=None)
@given(
    g=arrays("float64", (4, 3), elements=st.floats(-100, 100)),
    t=arrays("float64", (4, 3), elements=st.floats(-100, 100)),
    c=st.floats(0.01, 100.0),
)
def test_cosine_distance_properties(g, t, c):
    assume((numpy.linalg.norm(g, axis=1) > 1e-3).all())
    loss_calc = CosineDistance(normalize=False)
    grad, loss = loss_calc(g, t)
    per_example = loss_calc.get_loss_per_example(g, t)
    assert ((per_example >= -1e-12) & (per_example <= 2 + 1e-12)).all()
    # Scale invariance in the guesses, and so a gradient orthogonal to each guess row.
    assert loss_calc.get_loss(g * c, t) == pytest.approx(loss, rel=1e-9, abs=1e-12)
    numpy.testing.assert_allclose((grad * g).sum(axis=1), 0.0, atol=1e-9)


# CosineEmbedding.v1 ----------------------------------------------------------


def labelled(n, *, seed=0, dtype="float64"):
    rng = numpy.random.default_rng(seed)
    x1 = rng.normal(size=(n, 6))
    x2 = rng.normal(scale=0.8, size=(n, 6)) + rng.uniform(-1, 1, size=(n, 1)) * x1
    return x1.astype(dtype), x2.astype(dtype), rng.choice(numpy.asarray([-1, 1]), size=n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.5, 1.0, -1.0])
def test_cosine_embedding_matches_torch(dtype, margin, xp):
    x1, x2, y = labelled(53, dtype=dtype)
    y_t = torch.tensor(y, dtype=getattr(torch, dtype))
    expected_loss, (d1, d2) = torch_oracle(
        lambda a, b: F.cosine_embedding_loss(a, b, y_t, margin=margin, reduction="sum"), (x1, x2), n=53, grad_of=[0, 1]
    )
    (g1, g2), loss = resolve("CosineEmbedding.v1", margin=margin)((xp.asarray(x1), xp.asarray(x2)), xp.asarray(y))
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"], abs=TOL[dtype]["atol"])
    assert_close(g1, d1, dtype)
    assert_close(g2, d2, dtype)


def test_cosine_embedding_hand_worked_and_label_formats(xp):
    x1 = xp.asarray([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    x2 = xp.asarray([[3.0, 4.0], [3.0, 4.0], [-1.0, 0.0]])
    # cos = 0.6, 0.6, -1. Similar: 1 - 0.6; dissimilar, margin 0.5: 0.6 - 0.5; dissimilar at -1: 0.
    expected = [0.4, 0.1, 0.0]
    loss_calc = CosineEmbedding(margin=0.5, normalize=False)
    formats = (
        [1, -1, -1],
        [1.0, -1.0, -1.0],
        [numpy.int64(1), numpy.int64(-1), numpy.int64(-1)],
        numpy.asarray([1, -1, -1]),
        xp.asarray([[1], [-1], [-1]], dtype="float32"),
    )
    for labels in formats:
        numpy.testing.assert_allclose(to_numpy(loss_calc.get_loss_per_example((x1, x2), labels)), expected, atol=1e-12)
    (g1, g2), _ = loss_calc((x1, x2), [1, -1, -1])
    # d cos / d x1 = x2 / (|x1||x2|) - cos x1 / |x1|^2 = (0.6, 0.8) - 0.6 (1, 0) = (0, 0.8)
    numpy.testing.assert_allclose(to_numpy(g1), [[0.0, -0.8], [0.0, 0.8], [0.0, 0.0]], atol=1e-10)
    # d cos / d x2 = x1 / 5 - 0.6 x2 / 25 = (0.2 - 0.072, -0.096)
    numpy.testing.assert_allclose(to_numpy(g2), [[-0.128, 0.096], [0.128, -0.096], [0.0, 0.0]], atol=1e-10)


def test_cosine_embedding_zero_vectors_are_finite(xp):
    zeros, ones = xp.zeros((2, 3)), xp.ones((2, 3))
    for pair in [(zeros, ones), (ones, zeros), (zeros, zeros)]:
        (g1, g2), loss = CosineEmbedding(margin=-0.5)(pair, [1, -1])
        # cos = 0: similar costs 1, dissimilar costs 0 - (-0.5).
        assert loss == pytest.approx(0.75)
        assert numpy.isfinite(to_numpy(g1)).all() and numpy.isfinite(to_numpy(g2)).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), margin=st.floats(-1.0, 1.0))
def test_cosine_embedding_properties(seed, margin):
    x1, x2, y = labelled(5, seed=seed)
    loss_calc = CosineEmbedding(margin=margin, normalize=False)
    (g1, g2), loss = loss_calc((x1, x2), y)
    per_example = loss_calc.get_loss_per_example((x1, x2), y)
    assert ((per_example >= 0) & (per_example <= 2 + 1e-12)).all()
    # Symmetric in the pair: swapping x1 and x2 swaps the gradients.
    (h1, h2), loss_swapped = loss_calc((x2, x1), y)
    assert loss_swapped == pytest.approx(loss, rel=1e-12)
    numpy.testing.assert_allclose(h1, g2, rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(h2, g1, rtol=1e-12, atol=1e-15)


# TripletMargin.v1 ------------------------------------------------------------

TRIPLET_SETTINGS = [
    {},
    {"margin": 0.05},  # PyTorch refuses margin = 0 (we accept it: see below)
    {"margin": 5.0, "p": 1.0},
    {"p": 1.0, "eps": 0.0, "swap": True},
    {"p": 3.0, "eps": 0.1},
    {"p": 1.5, "swap": True, "margin": 2.0},
    {"p": 2.0, "eps": 0.0, "swap": True, "margin": 0.5},
]


def triplet_inputs(n=47, *, seed=0, dtype="float64"):
    rng = numpy.random.default_rng(seed)
    a = rng.normal(size=(n, 8))
    p = a + rng.normal(scale=0.8, size=(n, 8))
    neg = a + rng.normal(scale=1.0, size=(n, 8))
    return tuple(x.astype(dtype) for x in (a, p, neg))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", TRIPLET_SETTINGS, ids=str)
def test_triplet_margin_matches_torch(dtype, config, xp):
    a, p, neg = triplet_inputs(dtype=dtype)
    kwargs = {"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": False, **config}
    expected_loss, grads = torch_oracle(
        lambda *x: F.triplet_margin_loss(*x, reduction="sum", **kwargs), (a, p, neg), n=len(a), grad_of=[0, 1, 2]
    )
    ours, loss = resolve("TripletMargin.v1", **config)(tuple(xp.asarray(x) for x in (a, p, neg)), None)
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"], abs=TOL[dtype]["atol"])
    assert isinstance(ours, tuple) and len(ours) == 3
    for got, expected in zip(ours, grads):
        assert_close(got, expected, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", [{}, {"swap": True, "p": 1.5, "margin": 4.0}, {"eps": 0.0}], ids=str)
def test_triplet_margin_squared_matches_torch_autograd(dtype, config, xp):
    a, p, neg = triplet_inputs(dtype=dtype, seed=4)
    margin, pn, eps, swap = config.get("margin", 1.0), config.get("p", 2.0), config.get("eps", 1e-6), config.get("swap", False)

    def squared_triplet(a, p, neg):
        d_pos = F.pairwise_distance(a, p, p=pn, eps=eps) ** 2
        d_neg = F.pairwise_distance(a, neg, p=pn, eps=eps) ** 2
        if swap:
            d_neg = torch.minimum(d_neg, F.pairwise_distance(p, neg, p=pn, eps=eps) ** 2)
        return (margin + d_pos - d_neg).clamp_min(0).sum()

    expected_loss, grads = torch_oracle(squared_triplet, (a, p, neg), n=len(a), grad_of=[0, 1, 2])
    ours, loss = resolve("TripletMargin.v1", squared=True, **config)(tuple(xp.asarray(x) for x in (a, p, neg)), None)
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"], abs=TOL[dtype]["atol"])
    for got, expected in zip(ours, grads):
        assert_close(got, expected, dtype)


def test_triplet_margin_squared_is_gluons_triplet_loss(xp):
    """Gluon: relu(sum((positive - pred)^2) - sum((negative - pred)^2) + margin)."""
    a, p, neg = triplet_inputs(n=20, seed=7)
    gluon = numpy.maximum(((p - a) ** 2).sum(axis=1) - ((neg - a) ** 2).sum(axis=1) + 1.0, 0.0)
    loss_calc = TripletMargin(squared=True, eps=0.0, normalize=False)
    per_example = loss_calc.get_loss_per_example(tuple(xp.asarray(x) for x in (a, p, neg)), None)
    numpy.testing.assert_allclose(to_numpy(per_example), gluon, rtol=1e-12, atol=1e-12)


def test_triplet_margin_zero_margin_is_a_plain_ranking_loss(xp):
    a, p, neg = triplet_inputs(n=30, seed=8)
    d_pos = numpy.linalg.norm(a - p + 1e-6, axis=1)
    d_neg = numpy.linalg.norm(a - neg + 1e-6, axis=1)
    per_example = TripletMargin(margin=0.0).get_loss_per_example(tuple(xp.asarray(x) for x in (a, p, neg)), None)
    numpy.testing.assert_allclose(to_numpy(per_example), numpy.maximum(d_pos - d_neg, 0.0), rtol=1e-12)
    assert (to_numpy(per_example) == 0).any() and (to_numpy(per_example) > 0).any()


def test_triplet_margin_hand_worked(xp):
    a, p, neg = xp.asarray([[0.0, 0.0]]), xp.asarray([[3.0, 4.0]]), xp.asarray([[0.0, 2.0]])
    (ga, gp, gn), loss = TripletMargin(eps=0.0)((a, p, neg), None)
    assert loss == pytest.approx(1.0 + 5.0 - 2.0)
    numpy.testing.assert_allclose(to_numpy(gp), [[0.6, 0.8]], atol=1e-15)  # -(a - p)/|a - p|
    numpy.testing.assert_allclose(to_numpy(gn), [[0.0, -1.0]], atol=1e-15)  # (a - n)/|a - n|
    numpy.testing.assert_allclose(to_numpy(ga), [[-0.6, 0.2]], atol=1e-15)
    # swap: d(p, n) = |(3, 2)| = 3.606 > 2, so nothing changes; move n next to p and it does.
    neg = xp.asarray([[3.0, 3.0]])
    (ga, gp, gn), loss = TripletMargin(eps=0.0, swap=True)((a, p, neg), None)
    assert loss == pytest.approx(1.0 + 5.0 - 1.0)  # min(|(-3,-3)|, |(0, 1)|) = 1
    numpy.testing.assert_allclose(to_numpy(ga), [[-0.6, -0.8]], atol=1e-15)  # only the positive term
    numpy.testing.assert_allclose(to_numpy(gp), [[0.6, 0.8 - 1.0]], atol=1e-15)
    numpy.testing.assert_allclose(to_numpy(gn), [[0.0, 1.0]], atol=1e-15)
    # Satisfied margin: loss and gradient 0.
    (ga, _, _), loss = TripletMargin(margin=0.5)((a, xp.asarray([[0.1, 0.0]]), xp.asarray([[5.0, 5.0]])), None)
    assert loss == 0.0 and not to_numpy(ga).any()


def test_triplet_margin_zero_differences_are_finite(xp):
    x = xp.asarray([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    for config in [{"eps": 0.0}, {"eps": 0.0, "p": 1.0}, {"eps": 0.0, "p": 3.0}, {"eps": 0.0, "squared": True}]:
        grads, loss = TripletMargin(**config)((x, x, x), None)
        assert loss == pytest.approx(1.0)  # margin + 0 - 0
        assert all(numpy.isfinite(to_numpy(g)).all() for g in grads)


def test_triplet_margin_extreme_inputs(xp):
    a, p, neg = triplet_inputs(n=6, seed=9)
    for scale, dtype in [(1e15, "float32"), (1e150, "float64")]:
        for config in [{"p": 2.0}, {"p": 3.0}, {"p": 1.0}]:
            x = tuple(xp.asarray((v * scale).astype(dtype)) for v in (a, p, neg))
            grads, loss = TripletMargin(margin=0.0, **config)(x, None)
            assert numpy.isfinite(loss)
            assert all(numpy.isfinite(to_numpy(g)).all() for g in grads)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), shift=st.floats(-50, 50), p=st.sampled_from([1.0, 1.5, 2.0, 3.0]))
def test_triplet_margin_properties(seed, shift, p):
    a, pos, neg = triplet_inputs(n=5, seed=seed)
    loss_calc = TripletMargin(p=p, eps=0.0, normalize=False)
    grads, loss = loss_calc((a, pos, neg), None)
    assert (loss_calc.get_loss_per_example((a, pos, neg), None) >= 0).all()
    # Translation invariance (eps = 0), so the three gradients of a row sum to 0.
    assert loss_calc.get_loss((a + shift, pos + shift, neg + shift), None) == pytest.approx(loss, rel=1e-9, abs=1e-9)
    numpy.testing.assert_allclose(grads[0] + grads[1] + grads[2], 0.0, atol=1e-12)


# Bad inputs (SPEC section 7) -----------------------------------------------


def two(xp, shape=(3, 4)):
    return xp.ones(shape), xp.full(shape, 0.5)


def test_cosine_distance_bad_inputs(xp):
    g, t = two(xp)
    calc = CosineDistance()
    bad = g.copy()
    bad[0, 0] = numpy.nan
    with pytest.raises(ValueError, match="CosineDistance: 'guesses' contains NaN"):
        calc(bad, t)
    bad[0, 0] = numpy.inf
    with pytest.raises(ValueError, match="CosineDistance: 'truths' contains NaN or infinite"):
        calc(g, bad)
    with pytest.raises(ValueError, match="CosineDistance: 'truths' must have shape \\(3, 4\\)"):
        calc(g, xp.ones((3, 5)))
    with pytest.raises(ValueError, match="CosineDistance: 'guesses' must be 2-dimensional"):
        calc(xp.ones(4), xp.ones(4))
    with pytest.raises(ValueError, match="CosineDistance: 'guesses' must be 2-dimensional"):
        calc(xp.ones((2, 3, 4)), xp.ones((2, 3, 4)))
    with pytest.raises(TypeError, match="CosineDistance: 'guesses' must have a float dtype"):
        calc(xp.ones((3, 4), dtype="int32"), t)
    with pytest.raises(TypeError, match="CosineDistance: 'truths' must be a numpy or cupy array"):
        calc(g, [[1.0] * 4] * 3)
    with pytest.raises(TypeError, match="CosineDistance: 'guesses' must not be a Ragged"):
        calc(Ragged(g, xp.asarray([1, 2], dtype="int32")), t)
    with pytest.raises(ValueError, match="CosineDistance: 'sample_weight' must have shape \\(3,\\) or \\(3, 1\\)"):
        calc(g, t, sample_weight=xp.ones((3, 4)))
    with pytest.raises(ValueError, match="CosineDistance: 'sample_weight' must be non-negative"):
        calc(g, t, sample_weight=xp.asarray([1.0, -1.0, 1.0]))
    # Empty batch: loss 0.0 and an empty gradient.
    grad, loss = CosineDistance(ignore_zeros=True)(xp.zeros((0, 4)), xp.zeros((0, 4)))
    assert loss == 0.0 and grad.shape == (0, 4)


@pytest.mark.parametrize(
    "settings_,error,match",
    [
        ({"eps": 0.0}, ValueError, "Cannot create CosineDistance: 'eps' must be in \\(0, inf\\)"),
        ({"eps": -1e-8}, ValueError, "'eps' must be in"),
        ({"eps": float("nan")}, ValueError, "CosineDistance: 'eps' must not be NaN"),
        ({"eps": float("inf")}, ValueError, "CosineDistance: 'eps' must be in"),
        ({"ignore_zeros": 1}, TypeError, "CosineDistance: 'ignore_zeros' must be a bool"),
        ({"normalize": "yes"}, TypeError, "CosineDistance: 'normalize' must be a bool"),
    ],
)
def test_cosine_distance_bad_settings(settings_, error, match):
    with pytest.raises(error, match=match):
        CosineDistance(**settings_)


def test_cosine_distance_config_refuses_unknown_and_mistyped_arguments():
    with pytest.raises(ConfigValidationError):
        resolve("CosineDistance.v2", margin=0.5)
    with pytest.raises(ConfigValidationError):
        resolve("CosineDistance.v2", eps="small")


def test_cosine_embedding_bad_inputs(xp):
    x1, x2 = two(xp)
    calc = CosineEmbedding()
    for labels in ([1, 0, -1], [1, 2, -1], xp.asarray([0.5, 1.0, -1.0])):
        with pytest.raises(ValueError, match="CosineEmbedding: 'truths' must hold only -1 \\(dissimilar\\) and 1"):
            calc((x1, x2), labels)
    with pytest.raises(TypeError, match="CosineEmbedding: 'truths' must be a list of -1 and 1"):
        calc((x1, x2), [True, False, True])
    with pytest.raises(TypeError, match="CosineEmbedding: 'truths' must be a list of -1 and 1"):
        calc((x1, x2), [1, "a", -1])
    with pytest.raises(TypeError, match="CosineEmbedding: 'truths' must hold -1 and 1, got dtype"):
        calc((x1, x2), numpy.asarray(["1", "-1", "1"]))
    with pytest.raises(TypeError, match="CosineEmbedding: 'truths' must be an array or a list"):
        calc((x1, x2), None)
    with pytest.raises(ValueError, match="CosineEmbedding: 'truths' must have shape \\(3,\\)"):
        calc((x1, x2), [1, -1])
    with pytest.raises(TypeError, match="CosineEmbedding: 'guesses' must be a tuple \\(x1, x2\\)"):
        calc(x1, [1, -1, 1])
    with pytest.raises(TypeError, match="CosineEmbedding: 'guesses' must be a tuple \\(x1, x2\\) of arrays, got tuple of length 3"):
        calc((x1, x2, x2), [1, -1, 1])
    with pytest.raises(ValueError, match="CosineEmbedding: 'guesses\\[1\\] \\(x2\\)' must have the shape and dtype of guesses\\[0\\], \\(3, 4\\)"):
        calc((x1, xp.ones((3, 5))), [1, -1, 1])
    bad = x2.copy()
    bad[1, 1] = numpy.nan
    with pytest.raises(ValueError, match="CosineEmbedding: 'guesses\\[1\\] \\(x2\\)' contains NaN"):
        calc((x1, bad), [1, -1, 1])
    with pytest.raises(TypeError, match="CosineEmbedding: 'guesses\\[0\\] \\(x1\\)' must have a float dtype"):
        calc((xp.ones((3, 4), dtype="int64"), x2), [1, -1, 1])
    for margin in (1.5, -1.01, float("nan")):
        with pytest.raises(ValueError, match="Cannot create CosineEmbedding: 'margin'"):
            CosineEmbedding(margin=margin)
    (g1, g2), loss = calc((xp.zeros((0, 4)), xp.zeros((0, 4))), [])
    assert loss == 0.0 and g1.shape == g2.shape == (0, 4)


def test_triplet_margin_bad_inputs(xp):
    a, p = two(xp)
    calc = TripletMargin()
    with pytest.raises(TypeError, match="TripletMargin: 'truths' must be None \\(a triplet carries its own targets\\)"):
        calc((a, p, p), xp.ones(3))
    with pytest.raises(TypeError, match="TripletMargin: 'guesses' must be a tuple \\(anchor, positive, negative\\)"):
        calc((a, p), None)
    with pytest.raises(TypeError, match="TripletMargin: 'guesses' must be a tuple"):
        calc([a, p, p], None)
    with pytest.raises(ValueError, match="TripletMargin: 'guesses\\[2\\] \\(negative\\)' must have the shape and dtype of guesses\\[0\\], \\(3, 4\\)"):
        calc((a, p, xp.ones((2, 4))), None)
    bad = p.copy()
    bad[0, 0] = -numpy.inf
    with pytest.raises(ValueError, match="TripletMargin: 'guesses\\[1\\] \\(positive\\)' contains NaN or infinite"):
        calc((a, bad, p), None)
    with pytest.raises(ValueError, match="TripletMargin: 'guesses\\[0\\] \\(anchor\\)' must be 2-dimensional"):
        calc((xp.ones(3), xp.ones(3), xp.ones(3)), None)
    with pytest.raises(ValueError, match="TripletMargin: 'sample_weight' must have shape"):
        calc((a, p, p), None, sample_weight=xp.ones(4))


@pytest.mark.parametrize(
    "settings_,error,match",
    [
        ({"margin": -0.1}, ValueError, "Cannot create TripletMargin: 'margin' must be in \\[0, inf\\)"),
        ({"margin": float("inf")}, ValueError, "TripletMargin: 'margin' must be in"),
        ({"p": 0.5}, ValueError, "TripletMargin: 'p' must be in \\[1, inf\\)"),
        ({"p": float("inf")}, ValueError, "TripletMargin: 'p' must be in"),
        ({"p": "2"}, TypeError, "TripletMargin: 'p' must be a number"),
        ({"eps": -1e-6}, ValueError, "TripletMargin: 'eps' must be in \\[0, inf\\)"),
        ({"eps": float("nan")}, ValueError, "TripletMargin: 'eps' must not be NaN"),
        ({"swap": "no"}, TypeError, "TripletMargin: 'swap' must be a bool"),
        ({"squared": None}, TypeError, "TripletMargin: 'squared' must be a bool"),
    ],
)
def test_triplet_margin_bad_settings(settings_, error, match):
    with pytest.raises(error, match=match):
        TripletMargin(**settings_)


# Defects fixed on the shared core --------------------------------------------

@pytest.mark.parametrize("scale", [1e20, 1e30, 1e-20, 2e37])
@pytest.mark.parametrize("config", [{}, {"ignore_zeros": True}, {"eps": 0.5}], ids=str)
def test_cosine_distance_of_large_and_tiny_float32_rows(scale, config, xp):
    """Squared norms of 1e20 overflow float32 (and of 1e-20 underflow): rows are
    rescaled, and the float32 results are float64's (whose squares fit)."""
    g, t = (a * scale for a in rows((6, 5), seed=11))
    loss_calc = CosineDistance(**config)
    expected_grad, expected = loss_calc(g, t)
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow or NaN on the way
        grad, loss = loss_calc(xp.asarray(g.astype("float32")), xp.asarray(t.astype("float32")))
    assert loss == pytest.approx(expected, rel=1e-6)
    numpy.testing.assert_allclose(to_numpy(grad), expected_grad, rtol=2e-5, atol=2e-6 * abs(expected_grad).max())


def test_cosine_distance_rows_of_very_different_magnitudes(xp):
    """Each row is rescaled on its own: rows of 1e20, 1 and 1e-15 in one float32 batch."""
    g, t = rows((6, 5), seed=12)
    factors = numpy.asarray([1e20, 1.0, 1e-15, 1e20, 3e-5, 1e33])[:, None]
    per_example = CosineDistance(eps=1e-30).get_loss_per_example(
        xp.asarray((g * factors).astype("float32")), xp.asarray((t * factors[::-1]).astype("float32"))
    )
    numpy.testing.assert_allclose(to_numpy(per_example), CosineDistance().get_loss_per_example(g, t), rtol=1e-6)


def test_cosine_distance_float64_beyond_the_range_of_squares(xp):
    g, t = rows((5, 3), seed=13)
    expected_grad, expected = CosineDistance()(g, t)
    for scale in (1e200, 1e-200):
        grad, loss = CosineDistance(eps=1e-300)(xp.asarray(g * scale), xp.asarray(t * scale))
        assert loss == pytest.approx(expected, rel=1e-12)
        numpy.testing.assert_allclose(to_numpy(grad) * scale, expected_grad, rtol=1e-10)


def test_cosine_distance_eps_below_float32s_range_is_finite(xp):
    g = xp.asarray([[0.0, 0.0], [1.0, 2.0]], dtype="float32")
    t = xp.asarray([[3.0, 4.0], [1.0, 2.0]], dtype="float32")
    grad, loss = CosineDistance(eps=1e-300)(g, t)
    assert loss == pytest.approx(0.5, rel=1e-6)  # row 0: cosine 0; row 1: cosine 1
    assert bool(xp.isfinite(grad).all())


def test_cosine_distance_ignore_zeros_divides_by_a_device_count(xp):
    """The public hook: with ignore_zeros, the divisor is the number of kept rows, on the device."""
    g, t = (xp.asarray(a) for a in rows((5, 3), seed=14))
    t[[1, 3]] = 0.0
    result = CosineDistance(ignore_zeros=True).evaluate(g, t)
    assert isinstance(result, Evaluation)
    assert result.divisor.ndim == 0 and float(result.divisor) == 3.0  # a device scalar, not a host number
    assert result.loss() == pytest.approx(float(to_numpy(result.per_example).sum()) / 3, rel=1e-12)
    assert CosineDistance().evaluate(g, t).divisor == 5
    for dtype in ("float32", "float64"):  # a Python float, whatever the divisor's type
        assert type(CosineDistance(ignore_zeros=True)(g.astype(dtype), t.astype(dtype))[1]) is float


@pytest.mark.parametrize("scale", [1e20, 1e-20, 2e37])
def test_cosine_embedding_of_large_and_tiny_float32_rows(scale, xp):
    x1, x2, y = labelled(9, seed=3)
    loss_calc = CosineEmbedding(margin=0.2)
    (e1, e2), expected = loss_calc((x1 * scale, x2 * scale), y)  # float64: PyTorch's eps acts alike
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):
        (g1, g2), loss = loss_calc((xp.asarray((x1 * scale).astype("f")), xp.asarray((x2 * scale).astype("f"))), y)
    assert loss == pytest.approx(expected, rel=1e-6)
    for got, want in ((g1, e1), (g2, e2)):
        numpy.testing.assert_allclose(to_numpy(got), want, rtol=3e-5, atol=3e-6 * abs(want).max())


@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e36])
@pytest.mark.parametrize("config", [{}, {"p": 1.0}, {"p": 3.0, "swap": True}], ids=str)
def test_triplet_margin_of_large_and_tiny_float32_rows(scale, config, xp):
    """Without eps and margin the loss scales with the inputs and the gradients do not."""
    a, p, neg = triplet_inputs(n=8, seed=15)
    loss_calc = TripletMargin(margin=0.0, eps=0.0, **config)
    expected_grads, expected = loss_calc((a, p, neg), None)
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):
        grads, loss = loss_calc(tuple(xp.asarray((v * scale).astype("f")) for v in (a, p, neg)), None)
    assert loss / scale == pytest.approx(expected, rel=1e-5)
    for got, want in zip(grads, expected_grads):
        numpy.testing.assert_allclose(to_numpy(got), want, rtol=3e-5, atol=3e-6)


def test_triplet_margin_distances_beyond_the_dtype_are_named_errors(xp):
    a, p, neg = (xp.asarray((v * 1e20).astype("float32")) for v in triplet_inputs(n=4, seed=16))
    with pytest.raises(ValueError, match=r"Cannot calculate TripletMargin: 'guesses' hold values up to .*squared distances may overflow float32"):
        TripletMargin(squared=True)((a, p, neg), None)
    grads, loss = TripletMargin()((a, p, neg), None)  # plain distances of 1e20 fit
    assert numpy.isfinite(loss) and all(bool(xp.isfinite(g).all()) for g in grads)
    big = xp.full((1, 4), 3e38, dtype="float32")
    with pytest.raises(ValueError, match=r"TripletMargin: 'guesses' hold values up to 3e\+38, whose distances may overflow"):
        TripletMargin()((big, -big, big), None)


ROBUST_CASES = [
    ("cosine", lambda x: FE.cosine_distance(numpy, x[0], x[1], eps=1e-8, largest=x[2])),
    ("cosine-ignore", lambda x: FE.cosine_distance(numpy, x[0], x[1], eps=1e-8, mask=FE.nonzero_rows(numpy, x[1]), largest=x[2])),
    ("embedding", lambda x: FE.cosine_embedding(numpy, (x[0], x[1]), numpy.asarray([1, -1] * 4), margin=-0.3, largest=x[2])),
    ("triplet", lambda x: FE.triplet_margin(numpy, (x[0], x[1], x[0] * 0.5), None, margin=1.0, p=2.0, eps=1e-6, swap=True, squared=True, largest=x[2])),
    ("triplet-p3", lambda x: FE.triplet_margin(numpy, (x[0], x[1], -x[1]), None, margin=0.5, p=3.0, eps=0.0, swap=False, squared=False, largest=x[2])),
    ("mmd", lambda x: FE.rbf_mmd(numpy, x[0], x[1], bandwidths=[0.5, 3.0], largest=x[2])),
]


@pytest.mark.parametrize("name,fn", ROBUST_CASES, ids=[c[0] for c in ROBUST_CASES])
def test_rescaled_maths_agrees_with_the_direct_formulas(name, fn):
    """``largest=None`` takes the rescaled path: on ordinary inputs it gives the direct path's numbers."""
    g, t = rows((8, 5), seed=18)
    largest = float(max(abs(g).max(), abs(t).max()))
    grads_fast, fast = fn((g, t, largest))
    grads_safe, safe = fn((g, t, None))
    numpy.testing.assert_allclose(safe, fast, rtol=1e-12, atol=1e-14)
    grads_fast = grads_fast if isinstance(grads_fast, tuple) else (grads_fast,)
    grads_safe = grads_safe if isinstance(grads_safe, tuple) else (grads_safe,)
    for a, b in zip(grads_safe, grads_fast):
        numpy.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)


EMBEDDING_CALLS = [
    (CosineDistance(ignore_zeros=True), lambda g, t, y: (g, t)),
    (CosineEmbedding(), lambda g, t, y: ((g, t), y)),
    (TripletMargin(), lambda g, t, y: ((g, t, g * 0.5), None)),
    (MaximumMeanDiscrepancy(), lambda g, t, y: (g, t[:5])),
]


@pytest.mark.parametrize("loss_calc,args", EMBEDDING_CALLS, ids=lambda c: type(c).__name__ if isinstance(c, LossCalculator) else "")
def test_one_checks_run_per_call_sample_weight_included(loss_calc, args, monkeypatch):
    from thinc_losses_plus import _inputs

    g, t = rows((6, 4), seed=19)
    guesses, truths = args(g, t, [1, -1, 1, 1, -1, -1])
    runs = []
    original = _inputs.Checks.run
    monkeypatch.setattr(_inputs.Checks, "run", lambda self: runs.append(1) or original(self))
    for method in (loss_calc.__call__, loss_calc.get_grad, loss_calc.get_loss, loss_calc.get_loss_per_example):
        method(guesses, truths, sample_weight=numpy.ones(6))
    assert len(runs) == 4


def test_no_private_overrides_of_the_base():
    for cls in (CosineDistance, CosineEmbedding, TripletMargin, MaximumMeanDiscrepancy):
        private = [k for k in vars(cls) if k.startswith("_") and not k.startswith("__") and hasattr(LossCalculator, k)]
        assert private == [], f"{cls.__name__} overrides {private}"


# Memory and the blocked maths (SPEC section 8) ---------------------------------
#
# The whole-array formulas as they were before the gradients were written by row
# blocks and in place: the blocked maths must give their bits exactly.


def whole_cosine_distance(xp, guesses, targets, *, eps, mask=None, largest=None, weights=None, divisor=1, want_grad=True):
    eps = max(eps, float(numpy.finfo(guesses.dtype).tiny))
    width = guesses.shape[1]
    if FE.squares_fit(guesses.dtype, largest, width) and eps >= numpy.sqrt(float(numpy.finfo(guesses.dtype).tiny)):
        g, t, m_g, m_t = guesses, targets, 1.0, 1.0
    else:
        m_g, m_t = FE.row_scales(xp, eps, guesses), FE.row_scales(xp, eps, targets)
        g, t = guesses / m_g[:, None], targets / m_t[:, None]
    g_norm, t_norm = FE.row_norms(xp, g), FE.row_norms(xp, t)
    a, b = xp.maximum(g_norm, eps / m_g), xp.maximum(t_norm, eps / m_t)
    cos = xp.einsum("ij,ij->i", g, t) / (a * b)
    grads = None
    if want_grad:
        clamped_norm = a * m_g
        free = g_norm > eps / m_g
        grad = (((cos / a) * free) / clamped_norm)[:, None] * g
        grad -= (1.0 / (b * clamped_norm))[:, None] * t
        grads = (grad,)
    per_example = 1.0 - cos
    if mask is not None:
        keep = mask.astype(per_example.dtype)
        weights = keep if weights is None else weights * keep
    grads, per_example = FE.weigh(xp, grads, per_example, weights, divisor)
    return (grads[0] if grads else None), per_example


def whole_cosine_embedding(xp, guesses, targets, *, margin, largest=None, weights=None, divisor=1, want_grad=True):
    x1, x2 = guesses
    if FE.squares_fit(x1.dtype, largest, x1.shape[1]):
        m1 = m2 = 1.0
    else:
        floor = numpy.sqrt(FE.COSINE_EMBEDDING_EPS)
        m1, m2 = FE.row_scales(xp, floor, x1), FE.row_scales(xp, floor, x2)
        x1, x2 = x1 / m1[:, None], x2 / m2[:, None]
    s1 = xp.einsum("ij,ij->i", x1, x1) + (FE.COSINE_EMBEDDING_EPS / m1) / m1
    s2 = xp.einsum("ij,ij->i", x2, x2) + (FE.COSINE_EMBEDDING_EPS / m2) / m2
    root = xp.sqrt(s1) * xp.sqrt(s2)
    cos = xp.einsum("ij,ij->i", x1, x2) / root
    positive = targets > 0
    per_example = xp.where(positive, 1.0 - cos, xp.maximum(cos - margin, 0.0))
    grads = None
    if want_grad:
        d_cos = xp.where(positive, -1.0, (cos > margin).astype(cos.dtype))
        g1 = (d_cos / (m1 * root))[:, None] * x2 - (d_cos * cos / (m1 * s1))[:, None] * x1
        g2 = (d_cos / (m2 * root))[:, None] * x1 - (d_cos * cos / (m2 * s2))[:, None] * x2
        grads = (g1, g2)
    return FE.weigh(xp, grads, per_example, weights, divisor)


def whole_triplet_margin(xp, guesses, targets=None, *, margin, p, eps, swap, squared, largest=None, weights=None, divisor=1, want_grad=True):
    a, pos, neg = guesses
    scale, shift = None, eps
    if largest is None or not FE.squares_fit(a.dtype, 2.0 * largest + eps, a.shape[1]):
        scale = FE.row_scales(xp, eps, a, pos, neg)
        a, pos, neg = (x / scale[:, None] for x in (a, pos, neg))
        shift = (eps / scale)[:, None]
    u, v = a - pos + shift, a - neg + shift
    du, dv = FE.p_norm(xp, u, p), FE.p_norm(xp, v, p)
    d_neg = dv
    if swap:
        w = pos - neg + shift
        dw = FE.p_norm(xp, w, p)
        use_v = dv <= dw
        d_neg = xp.where(use_v, dv, dw)
    dist_pos, dist_neg = (du, d_neg) if scale is None else (du * scale, d_neg * scale)
    f_pos, f_neg = (dist_pos * dist_pos, dist_neg * dist_neg) if squared else (dist_pos, dist_neg)
    z = margin + f_pos - f_neg
    per_example = xp.maximum(z, 0.0)
    grads = None
    if want_grad:
        active = (z > 0).astype(z.dtype)
        c_pos = active * (2.0 * dist_pos if squared else 1.0)
        c_neg = active * (2.0 * dist_neg if squared else 1.0)
        gu = c_pos[:, None] * FE.p_norm_grad(xp, u, du, p)
        if swap:
            gv = (c_neg * use_v)[:, None] * FE.p_norm_grad(xp, v, dv, p)
            gw = (c_neg * ~use_v)[:, None] * FE.p_norm_grad(xp, w, dw, p)
            grads = (gu - gv, -gu - gw, gv + gw)
        else:
            gv = c_neg[:, None] * FE.p_norm_grad(xp, v, dv, p)
            grads = (gu - gv, -gu, gv)
    return FE.weigh(xp, grads, per_example, weights, divisor)


def assert_same_result(ours, whole):
    """The same per-example losses and gradients, bit for bit (signed zeros aside)."""
    (grad, per_example), (grad_w, per_example_w) = ours, whole
    numpy.testing.assert_array_equal(to_numpy(per_example), to_numpy(per_example_w))
    assert (grad is None) == (grad_w is None)
    if grad is not None:
        grad, grad_w = (grad, grad_w) if isinstance(grad, tuple) else ((grad,), (grad_w,))
        assert len(grad) == len(grad_w)
        for a, b in zip(grad, grad_w):
            assert a.shape == b.shape and a.dtype == b.dtype
            numpy.testing.assert_array_equal(to_numpy(a), to_numpy(b))


#: Several row blocks (600x50, 3000x7), one (47x5), empty rows and columns.
BLOCK_SHAPES = [(600, 50), (3000, 7), (47, 5), (0, 4), (3, 0)]


def block_inputs(shape, dtype, *, seed=0, count=2):
    rng = numpy.random.default_rng(seed)
    arrays = [rng.normal(size=shape).astype(dtype) for _ in range(count)]
    largest = float(max(abs(x).max(initial=0.0) for x in arrays))
    weights = rng.uniform(0.0, 2.0, size=shape[0]).astype(dtype)
    return arrays, largest, weights


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", BLOCK_SHAPES, ids=str)
@pytest.mark.parametrize("rescaled", [False, True], ids=["direct", "rescaled"])
def test_blocked_cosine_distance_gives_the_whole_array_bits(dtype, shape, rescaled):
    (g, t), largest, weights = block_inputs(shape, dtype)
    t[::7], g[::11] = 0.0, 0.0  # ignored rows, clamped norms
    for mask in (None, FE.nonzero_rows(numpy, t)):
        for w in (None, weights):
            for divisor in (max(shape[0], 1), numpy.asarray(3.0, dtype=dtype)):
                for want_grad in (True, False):
                    for eps in (1e-8, 0.3):
                        settings_ = dict(eps=eps, mask=mask, largest=None if rescaled else largest, weights=w, divisor=divisor, want_grad=want_grad)
                        ours = FE.cosine_distance(numpy, g, t, **settings_)
                        assert_same_result(ours, whole_cosine_distance(numpy, g, t, **settings_))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", BLOCK_SHAPES, ids=str)
@pytest.mark.parametrize("rescaled", [False, True], ids=["direct", "rescaled"])
def test_blocked_cosine_embedding_gives_the_whole_array_bits(dtype, shape, rescaled):
    (x1, x2), largest, weights = block_inputs(shape, dtype, seed=1)
    x1[::9] = 0.0
    y = numpy.random.default_rng(2).choice(numpy.asarray([-1.0, 1.0], dtype=dtype), size=shape[0])
    for w in (None, weights):
        for want_grad in (True, False):
            for margin in (0.0, 0.3):
                settings_ = dict(margin=margin, largest=None if rescaled else largest, weights=w, divisor=max(shape[0], 1), want_grad=want_grad)
                ours = FE.cosine_embedding(numpy, (x1, x2), y, **settings_)
                assert_same_result(ours, whole_cosine_embedding(numpy, (x1, x2), y, **settings_))


TRIPLET_BLOCK_SETTINGS = [
    dict(p=2.0, swap=False, squared=False),
    dict(p=2.0, swap=True, squared=False),
    dict(p=1.0, swap=False, squared=False),
    dict(p=1.0, swap=True, squared=False),
    dict(p=3.0, swap=True, squared=True),
    dict(p=1.5, swap=False, squared=True),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [s for s in BLOCK_SHAPES if s[1]], ids=str)
@pytest.mark.parametrize("config", TRIPLET_BLOCK_SETTINGS, ids=str)
def test_blocked_triplet_margin_gives_the_whole_array_bits(dtype, shape, config):
    (a, pos, neg), largest, weights = block_inputs(shape, dtype, seed=3, count=3)
    pos[::5] = a[::5]  # zero differences: a zero norm gradient
    for rescaled in (False, True):
        for w in (None, weights):
            for want_grad in (True, False):
                settings_ = dict(margin=1.0, eps=1e-6, largest=None if rescaled else largest, weights=w, divisor=max(shape[0], 1), want_grad=want_grad, **config)
                ours = FE.triplet_margin(numpy, (a, pos, neg), None, **settings_)
                assert_same_result(ours, whole_triplet_margin(numpy, (a, pos, neg), None, **settings_))


def test_blocked_maths_leaves_the_inputs_alone():
    (g, t, u), largest, _ = block_inputs((600, 50), "float32", count=3)
    copies = [x.copy() for x in (g, t, u)]
    y = numpy.where(numpy.arange(600) % 2, 1.0, -1.0).astype("float32")
    for rescaled in (None, largest):
        FE.cosine_distance(numpy, g, t, eps=1e-8, largest=rescaled)
        FE.cosine_embedding(numpy, (g, t), y, margin=0.0, largest=rescaled)
        for config in TRIPLET_BLOCK_SETTINGS:
            FE.triplet_margin(numpy, (g, t, u), None, margin=1.0, eps=1e-6, largest=rescaled, **config)
    for x, copy in zip((g, t, u), copies):
        numpy.testing.assert_array_equal(x, copy)


MEMORY_CASES = [
    ("CosineDistance.v2", {}, "pair"),
    ("CosineDistance.v2", {"ignore_zeros": True}, "pair"),
    ("CosineEmbedding.v1", {"margin": 0.2}, "labelled"),
    ("TripletMargin.v1", {}, "triplet"),
    ("TripletMargin.v1", {"p": 1.0, "swap": True}, "triplet"),
    ("TripletMargin.v1", {"p": 3.0, "squared": True}, "triplet"),
]


@pytest.mark.parametrize("name,config,kind", MEMORY_CASES, ids=[f"{n}-{c}" for n, c, _ in MEMORY_CASES])
def test_peak_memory_of_call_is_near_the_gradient(name, config, kind):
    """SPEC section 8: at most 1.1x the gradients' bytes at the benchmark sizes (tracemalloc):
    4096x300 for the cosine losses, 4096x128 triplets."""
    from battery import call_memory_ratio

    rng = numpy.random.default_rng(0)
    loss_calc = resolve(name, **config)
    if kind == "triplet":
        guesses, truths = tuple(rng.normal(size=(4096, 128)).astype("float32") for _ in range(3)), None
    else:
        g, t = (rng.normal(size=(4096, 300)).astype("float32") for _ in range(2))
        guesses, truths = ((g, t), rng.choice(numpy.asarray([-1, 1]), size=4096)) if kind == "labelled" else (g, t)
    assert call_memory_ratio(loss_calc, guesses, truths) <= 1.1
