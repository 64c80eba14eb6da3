"""Regression family: PyTorch as the oracle, hand-worked values, properties,
extreme inputs and bad inputs (SPEC sections 4 and 7).

PyTorch's default reduction is the mean over all N * C elements; ours sums
the columns of a row and divides by the rows N, so the oracle is PyTorch's
``reduction="sum"`` divided by N, and its gradient is autograd's of that.
"""
import math

import mpmath
import numpy
import pytest
import thinc.loss
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from thinc.api import registry
from thinc.config import ConfigValidationError
from thinc.types import Ragged

from conftest import to_numpy
from thinc_losses_plus import GaussianNLL, Huber, L1Distance, L2Distance, LogCosh, PoissonNLL, SmoothL1

TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


def resolve(name, **settings):
    return registry.resolve({"loss": {"@losses": name, **settings}})["loss"]


def torch_oracle(fn, tensors, *, n, grad_of=None):
    """Loss ``fn(*tensors, reduction="sum") / n`` and autograd's gradient of it."""
    leaves = [torch.tensor(t, requires_grad=True) for t in tensors]
    loss = fn(*leaves) / n
    loss.backward()
    wanted = range(len(leaves)) if grad_of is None else grad_of
    return float(loss.detach()), [leaves[i].grad.numpy() for i in wanted]


def assert_close(ours, expected, dtype):
    numpy.testing.assert_allclose(to_numpy(ours), expected, **TOL[dtype])


def data(shape, *, seed=0, scale=2.0):
    rng = numpy.random.default_rng(seed)
    return rng.normal(scale=scale, size=shape), rng.normal(scale=scale, size=shape)


DIFFERENCE_LOSSES = [
    ("L2Distance.v2", {}, lambda g, t: 0.5 * F.mse_loss(g, t, reduction="sum")),
    ("L1Distance.v1", {}, lambda g, t: F.l1_loss(g, t, reduction="sum")),
    ("Huber.v1", {}, lambda g, t: F.huber_loss(g, t, reduction="sum")),
    ("Huber.v1", {"delta": 0.35}, lambda g, t: F.huber_loss(g, t, reduction="sum", delta=0.35)),
    ("Huber.v1", {"delta": 4.0}, lambda g, t: F.huber_loss(g, t, reduction="sum", delta=4.0)),
    ("SmoothL1.v1", {}, lambda g, t: F.smooth_l1_loss(g, t, reduction="sum")),
    ("SmoothL1.v1", {"beta": 0.35}, lambda g, t: F.smooth_l1_loss(g, t, reduction="sum", beta=0.35)),
    ("SmoothL1.v1", {"beta": 0.0}, lambda g, t: F.smooth_l1_loss(g, t, reduction="sum", beta=0.0)),
    ("LogCosh.v1", {}, lambda g, t: torch.log(torch.cosh(g - t)).sum()),
]


# PyTorch differential tests --------------------------------------------------


@pytest.mark.parametrize("name,config,torch_fn", DIFFERENCE_LOSSES, ids=lambda x: str(x) if not callable(x) else "")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(37, 5), (8, 1), (13,)])
def test_difference_losses_match_torch(name, config, torch_fn, dtype, shape, xp):
    g, t = (a.astype(dtype) for a in data(shape))
    n = shape[0]
    expected_loss, (expected_grad,) = torch_oracle(torch_fn, (g, t), n=n, grad_of=[0])
    grad, loss = resolve(name, **config)(xp.asarray(g), xp.asarray(t))
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"], abs=TOL[dtype]["atol"])
    assert_close(grad, expected_grad, dtype)
    # normalize=False: the plain sum.
    grad_s, loss_s = resolve(name, normalize=False, **config)(xp.asarray(g), xp.asarray(t))
    assert loss_s == pytest.approx(expected_loss * n, rel=TOL[dtype]["rtol"])
    assert_close(grad_s, expected_grad * n, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "config",
    [{}, {"full": True}, {"eps": 0.5}, {"full": True, "eps": 1e-3}],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default",
)
def test_poisson_rates_match_torch(config, dtype, xp):
    rng = numpy.random.default_rng(1)
    rates = rng.uniform(0.0, 5.0, size=(29, 6)).astype(dtype)
    rates[0, :3] = 0.0  # rate 0: log(eps)
    counts = rng.integers(0, 9, size=(29, 6)).astype(dtype)
    eps = config.get("eps", 1e-8)

    def torch_fn(x, y):
        return F.poisson_nll_loss(x, y, log_input=False, full=config.get("full", False), eps=eps, reduction="sum")

    expected_loss, (expected_grad,) = torch_oracle(torch_fn, (rates, counts), n=29, grad_of=[0])
    grad, loss = resolve("PoissonNLL.v1", **config)(xp.asarray(rates), xp.asarray(counts))
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"])
    assert_close(grad, expected_grad, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("full", [False, True])
def test_poisson_log_rates_match_torch(full, dtype, xp):
    rng = numpy.random.default_rng(2)
    log_rates = rng.normal(scale=2.0, size=(31, 3)).astype(dtype)
    counts = rng.integers(0, 12, size=(31, 3)).astype(dtype)

    def torch_fn(x, y):
        return F.poisson_nll_loss(x, y, log_input=True, full=full, reduction="sum")

    expected_loss, (expected_grad,) = torch_oracle(torch_fn, (log_rates, counts), n=31, grad_of=[0])
    grad, loss = resolve("PoissonNLL.v1", from_logits=True, full=full)(xp.asarray(log_rates), xp.asarray(counts))
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"])
    assert_close(grad, expected_grad, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("var_shape", [(23, 4), (23, 1), (23,)], ids=["per-element", "per-row", "vector"])
@pytest.mark.parametrize(
    "config", [{}, {"full": True}, {"eps": 0.3}, {"full": True, "eps": 1e-2}], ids=["default", "full", "eps", "full-eps"]
)
def test_gaussian_matches_torch(config, var_shape, dtype, xp):
    rng = numpy.random.default_rng(3)
    mean = rng.normal(size=(23, 4)).astype(dtype)
    var = rng.uniform(0.0, 2.0, size=var_shape).astype(dtype)
    var.reshape(-1)[:3] = [0.0, 1e-9, 0.1]  # below eps: clamped
    truths = rng.normal(size=(23, 4)).astype(dtype)

    def torch_fn(m, v, y):
        return F.gaussian_nll_loss(m, y, v, full=config.get("full", False), eps=config.get("eps", 1e-6), reduction="sum")

    expected_loss, (d_mean, d_var) = torch_oracle(torch_fn, (mean, var, truths), n=23, grad_of=[0, 1])
    (ours_mean, ours_var), loss = resolve("GaussianNLL.v1", **config)((xp.asarray(mean), xp.asarray(var)), xp.asarray(truths))
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"])
    assert ours_var.shape == var.shape
    # d_var reaches 1/eps^2 scale where var is clamped: compare relative to the largest entry.
    assert_close(ours_mean, d_mean, dtype)
    numpy.testing.assert_allclose(
        to_numpy(ours_var), d_var, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * abs(d_var).max()
    )


NONE_REDUCTION = {
    "L2Distance.v2": lambda g, t: 0.5 * F.mse_loss(g, t, reduction="none"),
    "L1Distance.v1": lambda g, t: F.l1_loss(g, t, reduction="none"),
    "Huber.v1": lambda g, t: F.huber_loss(g, t, reduction="none", delta=0.7),
    "SmoothL1.v1": lambda g, t: F.smooth_l1_loss(g, t, reduction="none", beta=0.7),
    "LogCosh.v1": lambda g, t: torch.log(torch.cosh(g - t)),
    "PoissonNLL.v1": lambda g, t: F.poisson_nll_loss(g, t, log_input=True, full=True, reduction="none"),
}
SETTINGS = {"Huber.v1": {"delta": 0.7}, "SmoothL1.v1": {"beta": 0.7}, "PoissonNLL.v1": {"from_logits": True, "full": True}}


@pytest.mark.parametrize("name", list(NONE_REDUCTION))
@pytest.mark.parametrize("weight_shape", ["per-example", "per-row-column", "per-element"])
def test_sample_weight_matches_weighted_torch(name, weight_shape, xp):
    """sample_weight multiplies each elementwise term (and its gradient); normalize still divides by N."""
    g, t = data((11, 3))
    if name == "PoissonNLL.v1":
        t = numpy.round(abs(t) * 2)
    rng = numpy.random.default_rng(9)
    w = rng.uniform(0.0, 2.0, size={"per-example": (11,), "per-row-column": (11, 1), "per-element": (11, 3)}[weight_shape])
    w_torch = torch.tensor(w if w.ndim == 2 else w[:, None])
    expected_loss, (expected_grad,) = torch_oracle(
        lambda a, b: (NONE_REDUCTION[name](a, b) * w_torch).sum(), (g, t), n=11, grad_of=[0]
    )
    grad, loss = resolve(name, **SETTINGS.get(name, {}))(xp.asarray(g), xp.asarray(t), sample_weight=xp.asarray(w))
    assert loss == pytest.approx(expected_loss, rel=1e-11)
    assert_close(grad, expected_grad, "float64")


@pytest.mark.parametrize("var_cols", [1, 3])
def test_gaussian_sample_weight_matches_weighted_torch(var_cols, xp):
    rng = numpy.random.default_rng(4)
    mean, truths = rng.normal(size=(9, 3)), rng.normal(size=(9, 3))
    var = rng.uniform(0.1, 2.0, size=(9, var_cols))
    w = rng.uniform(0.0, 2.0, size=(9, 3))

    def torch_fn(m, v, y):
        return (F.gaussian_nll_loss(m, y, v, reduction="none") * torch.tensor(w)).sum()

    expected_loss, (d_mean, d_var) = torch_oracle(torch_fn, (mean, var, truths), n=9, grad_of=[0, 1])
    (ours_mean, ours_var), loss = GaussianNLL()((xp.asarray(mean), xp.asarray(var)), xp.asarray(truths), sample_weight=xp.asarray(w))
    assert loss == pytest.approx(expected_loss, rel=1e-11)
    assert_close(ours_mean, d_mean, "float64")
    assert_close(ours_var, d_var, "float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_cosh_matches_torch_autograd_and_float64(dtype, xp):
    g, t = (a.astype(dtype) for a in data((41, 7), scale=3.0))
    expected_loss, (expected_grad,) = torch_oracle(
        lambda a, b: torch.log(torch.cosh(a - b)).sum(), (g, t), n=41, grad_of=[0]
    )
    grad, loss = LogCosh()(xp.asarray(g), xp.asarray(t))
    assert loss == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"])
    assert_close(grad, expected_grad, dtype)
    # ... and the float64 reference of the float32 inputs.
    d = g.astype("float64") - t.astype("float64")
    assert loss == pytest.approx(numpy.log(numpy.cosh(d)).sum() / 41, rel=TOL[dtype]["rtol"])


def log_cosh_reference(x: float) -> float:
    """log(cosh(x)) to 120 digits (mpmath ships with torch's sympy)."""
    with mpmath.workdps(120):
        return float(mpmath.log(mpmath.cosh(mpmath.mpf(x))))


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-14), ("float32", 2e-6)])
def test_log_cosh_precision_near_zero_and_far(dtype, rtol, xp):
    d = numpy.asarray([1e-30, 1e-8, 1e-4, -3e-5, 1e-2, 0.5, 9.99, 10.0, 10.01, 30.0, 1e4, -1e4], dtype=dtype)
    per_example = LogCosh().get_loss_per_example(xp.asarray(d[:, None]), xp.zeros((len(d), 1), dtype=dtype))
    expected = numpy.asarray([log_cosh_reference(float(x)) for x in d]).astype(dtype)  # 5e-61 is 0 in float32
    numpy.testing.assert_allclose(to_numpy(per_example), expected, rtol=rtol, atol=0)
    assert (to_numpy(per_example) >= 0).all()


# Thinc's L2Distance.v1 ---------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("normalize", [True, False])
def test_l2_v2_gradient_is_thincs_v1_bit_for_bit(normalize, dtype, xp):
    g, t = (xp.asarray(a.astype(dtype)) for a in data((57, 9), scale=3.0))
    thinc_v1 = resolve("L2Distance.v1", normalize=normalize)
    ours = resolve("L2Distance.v2", normalize=normalize)
    expected = thinc_v1.get_grad(g, t)
    grad, loss = ours(g, t)
    assert grad.dtype == expected.dtype
    assert to_numpy(grad).tobytes() == to_numpy(expected).tobytes()
    # Our loss is the one whose gradient that is: 0.5 * sum(d^2) / N.
    d = to_numpy(g).astype("float64") - to_numpy(t).astype("float64")
    assert loss == pytest.approx(0.5 * (d**2).sum() / (57 if normalize else 1), rel=1e-6)


def test_thinc_l2_distance_v1_still_resolves_to_thinc():
    assert type(resolve("L2Distance.v1")) is thinc.loss.L2Distance
    assert type(resolve("L2Distance.v2")) is L2Distance


# Hand-worked values ------------------------------------------------------------


def test_hand_worked_values(xp):
    g = xp.asarray([[0.5, -3.0], [2.0, 2.0]])
    t = xp.asarray([[0.0, 0.0], [2.0, 0.0]])
    # d = [[0.5, -3], [0, 2]]
    cases = {
        L2Distance(): ([0.125 + 4.5, 0 + 2.0], [[0.5, -3.0], [0.0, 2.0]]),
        L1Distance(): ([3.5, 2.0], [[1.0, -1.0], [0.0, 1.0]]),
        Huber(delta=1.0): ([0.125 + 2.5, 1.5], [[0.5, -1.0], [0.0, 1.0]]),
        Huber(delta=2.5): ([0.125 + 2.5 * (3 - 1.25), 2.0], [[0.5, -2.5], [0.0, 2.0]]),
        SmoothL1(beta=2.5): ([0.05 + (3 - 1.25), 0.8], [[0.2, -1.0], [0.0, 0.8]]),
        SmoothL1(beta=0.0): ([3.5, 2.0], [[1.0, -1.0], [0.0, 1.0]]),
        LogCosh(): (
            [math.log(math.cosh(0.5)) + math.log(math.cosh(3.0)), math.log(math.cosh(2.0))],
            [[math.tanh(0.5), -math.tanh(3.0)], [0.0, math.tanh(2.0)]],
        ),
    }
    for loss_calc, (per_example, grad) in cases.items():
        loss_calc.normalize = False
        got_grad, got_loss = loss_calc(g, t)
        numpy.testing.assert_allclose(to_numpy(loss_calc.get_loss_per_example(g, t)), per_example, rtol=1e-12)
        assert got_loss == pytest.approx(sum(per_example), rel=1e-12)
        numpy.testing.assert_allclose(to_numpy(got_grad), grad, rtol=1e-12)


def test_hand_worked_poisson_and_gaussian(xp):
    # Poisson, rates 2 and 0 with counts 3 and 0 (eps 0.5): (2 - 3 log 2.5) + (0 - 0)
    rates, counts = xp.asarray([[2.0, 0.0]]), xp.asarray([[3.0, 0.0]])
    grad, loss = PoissonNLL(eps=0.5)(rates, counts)
    assert loss == pytest.approx(2 - 3 * math.log(2.5))
    numpy.testing.assert_allclose(to_numpy(grad), [[1 - 3 / 2.5, 1.0]])
    # full adds 3 log 3 - 3 + 0.5 log(6 pi) for the count 3, nothing for 0.
    _, loss_full = PoissonNLL(eps=0.5, full=True)(rates, counts)
    assert loss_full == pytest.approx(loss + 3 * math.log(3) - 3 + 0.5 * math.log(6 * math.pi))
    # Log-rates: exp(log 2) - 3 log 2, gradient 2 - 3.
    grad, loss = PoissonNLL(from_logits=True)(xp.asarray([[math.log(2.0)]]), xp.asarray([[3.0]]))
    assert loss == pytest.approx(2 - 3 * math.log(2))
    assert float(grad[0, 0]) == pytest.approx(-1.0)
    # Gaussian: mean 1, var 4, truth 3: 0.5 (log 4 + 4 / 4); d_mean -2/4, d_var 0.5 (1/4 - 4/16) = 0.
    (d_mean, d_var), loss = GaussianNLL()((xp.asarray([[1.0]]), xp.asarray([[4.0]])), xp.asarray([[3.0]]))
    assert loss == pytest.approx(0.5 * (math.log(4) + 1))
    assert float(d_mean[0, 0]) == pytest.approx(-0.5)
    assert float(d_var[0, 0]) == pytest.approx(0.0, abs=1e-15)
    # var 0 is clamped to eps: 0.5 (log eps + 1 / eps) for a residual of 1.
    (_, d_var), loss = GaussianNLL(eps=0.01, full=True)((xp.asarray([1.0]), xp.asarray([0.0])), xp.asarray([0.0]))
    assert loss == pytest.approx(0.5 * (math.log(0.01) + 100) + 0.5 * math.log(2 * math.pi))
    assert float(d_var[0]) == pytest.approx(0.5 * (100 - 10000))


def test_integer_truths_accepted(xp):
    counts = xp.asarray([[3, 0, 1]], dtype="int32")
    rates = xp.asarray([[1.0, 2.0, 0.5]], dtype="float32")
    expected = PoissonNLL()(rates, counts.astype("float32"))
    got = PoissonNLL()(rates, counts)
    assert got[1] == expected[1]
    assert to_numpy(got[0]).tobytes() == to_numpy(expected[0]).tobytes()
    assert L2Distance().get_loss(rates, [[3, 0, 1]]) == L2Distance().get_loss(rates, counts.astype("float32"))


# Properties ----------------------------------------------------------------------

finite = st.floats(-50, 50, allow_nan=False, width=64)
matrices = arrays("float64", st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=finite)


@settings(max_examples=60, deadline=None)
@given(g=matrices, data=st.data(), delta=st.floats(0.01, 20))
def test_huber_is_delta_times_smooth_l1_and_bounded(g, data, delta):
    t = data.draw(arrays("float64", g.shape, elements=finite))
    huber_grad, huber = Huber(delta=delta)(g, t)
    smooth_grad, smooth = SmoothL1(beta=delta)(g, t)
    assert huber == pytest.approx(delta * smooth, rel=1e-12, abs=1e-300)
    numpy.testing.assert_allclose(huber_grad, delta * smooth_grad, rtol=1e-12, atol=1e-300)
    # Huber lies below both the L2 loss and delta times the L1 loss; its gradient is bounded by delta.
    assert huber <= L2Distance().get_loss(g, t) * (1 + 1e-12) + 1e-300
    assert huber <= delta * L1Distance().get_loss(g, t) * (1 + 1e-12) + 1e-300
    assert (abs(huber_grad) <= delta / g.shape[0] * (1 + 1e-12)).all()


@settings(max_examples=60, deadline=None)
@given(g=matrices, data=st.data())
def test_log_cosh_between_l1_and_l2(g, data):
    t = data.draw(arrays("float64", g.shape, elements=finite))
    log_cosh = LogCosh(normalize=False).get_loss_per_example(g, t)
    l2 = L2Distance(normalize=False).get_loss_per_example(g, t)
    l1 = L1Distance(normalize=False).get_loss_per_example(g, t)
    assert (log_cosh >= 0).all()
    assert (log_cosh <= l2 * (1 + 1e-12) + 1e-300).all()
    assert (log_cosh >= l1 - g.shape[1] * math.log(2) - 1e-9).all()
    grad = LogCosh(normalize=False).get_grad(g, t)
    assert (abs(grad) <= 1).all()


@settings(max_examples=40, deadline=None)
@given(g=matrices, data=st.data())
def test_gaussian_with_unit_variance_is_l2(g, data):
    t = data.draw(arrays("float64", g.shape, elements=finite))
    ones = numpy.ones((g.shape[0], 1))
    (d_mean, d_var), loss = GaussianNLL()((g, ones), t)
    l2_grad, l2 = L2Distance()(g, t)
    assert loss == pytest.approx(l2, rel=1e-12, abs=1e-300)
    numpy.testing.assert_allclose(d_mean, l2_grad, rtol=1e-12)
    # d loss / d var at var 1: 0.5 * (C - sum(d^2)) / N per row.
    expected = 0.5 * (g.shape[1] - ((g - t) ** 2).sum(axis=1, keepdims=True)) / g.shape[0]
    numpy.testing.assert_allclose(d_var, expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    log_rates=arrays("float64", st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=st.floats(-20, 20)),
    data=st.data(),
)
def test_poisson_log_rates_equal_rates(log_rates, data):
    counts = data.draw(arrays("float64", log_rates.shape, elements=st.integers(0, 50).map(float)))
    grad_log, from_logits = PoissonNLL(from_logits=True, full=True)(log_rates, counts)
    grad_rate, from_rates = PoissonNLL(eps=1e-300, full=True)(numpy.exp(log_rates), counts)
    assert from_logits == pytest.approx(from_rates, rel=1e-9, abs=1e-9)
    # Chain rule: d/d(log r) = r * d/dr.
    numpy.testing.assert_allclose(grad_log, numpy.exp(log_rates) * grad_rate, rtol=1e-9, atol=1e-12)


# Extreme inputs -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "name,config",
    [("L2Distance.v2", {}), ("L1Distance.v1", {}), ("Huber.v1", {}), ("SmoothL1.v1", {}), ("SmoothL1.v1", {"beta": 0.0}),
     ("LogCosh.v1", {}), ("PoissonNLL.v1", {}), ("PoissonNLL.v1", {"full": True})],
)
def test_extreme_inputs_give_finite_results(name, config, dtype, xp):
    g = xp.asarray([[1e4, -1e4, 0.0, 1e-30], [3e4, 1e4, 1e-45, 5.0]], dtype=dtype)
    t = xp.asarray([[-1e4, 1e4, 1e4, 0.0], [0.0, 1e4, 0.0, 5.0]], dtype=dtype)
    if name == "PoissonNLL.v1":
        g, t = abs(g), abs(t)
    grad, loss = resolve(name, **config)(g, t)
    assert math.isfinite(loss)
    assert bool(xp.isfinite(grad).all())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_log_rates_and_variances(dtype, xp):
    # Very negative log-rates: exp underflows to 0, the loss is -t x.
    grad, loss = PoissonNLL(from_logits=True, normalize=False)(
        xp.asarray([[-1e4, -80.0]], dtype=dtype), xp.asarray([[3.0, 0.0]], dtype=dtype)
    )
    assert loss == pytest.approx(3e4, rel=1e-6)
    numpy.testing.assert_allclose(to_numpy(grad), [[-3.0, math.exp(-80.0)]], rtol=1e-5)
    # Variances 0 and 1e4, far residuals: finite.
    mean = xp.asarray([[1e3, -1e3]], dtype=dtype)
    var = xp.asarray([[0.0, 1e4]], dtype=dtype)
    (d_mean, d_var), loss = GaussianNLL(eps=1e-3)((mean, var), xp.zeros((1, 2), dtype=dtype))
    assert math.isfinite(loss)
    assert bool(xp.isfinite(d_mean).all()) and bool(xp.isfinite(d_var).all())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [1e-300, 1e-40, 1e-3, 1e38, 1e300])
def test_extreme_delta_and_beta(width, dtype, xp):
    """Settings beyond the dtype's range still give the exact (rounded) numbers."""
    values = [1.0, -2.0, 0.5, 1e4]
    g = xp.asarray([values], dtype=dtype)
    t = xp.zeros((1, 4), dtype=dtype)
    tiny = {"float32": 1e-37, "float64": 1e-300}[dtype]
    for loss_calc, f, df in (
        (
            Huber(delta=width, normalize=False),
            lambda x: 0.5 * x * x if abs(x) < width else width * (abs(x) - 0.5 * width),
            lambda x: max(-width, min(width, x)),
        ),
        (
            SmoothL1(beta=width, normalize=False),
            lambda x: 0.5 * x * x / width if abs(x) < width else abs(x) - 0.5 * width,
            lambda x: x / width if abs(x) < width else math.copysign(1.0, x),
        ),
    ):
        grad, loss = loss_calc(g, t)
        assert loss == pytest.approx(sum(f(x) for x in values), rel=TOL[dtype]["rtol"], abs=tiny)
        numpy.testing.assert_allclose(to_numpy(grad)[0], [df(x) for x in values], rtol=TOL[dtype]["rtol"], atol=tiny)


def test_overflowing_loss_is_an_error_not_inf(xp):
    # exp(1e4) is not a number any float holds: refuse rather than return inf.
    with pytest.raises(ValueError, match=r"PoissonNLL.*'guesses'.*overflows"):
        PoissonNLL(from_logits=True)(xp.asarray([[1e4]]), xp.asarray([[1.0]]))
    with pytest.raises(ValueError, match=r"L2Distance.*'guesses'.*overflows float32"):
        L2Distance()(xp.asarray([[3e38]], dtype="float32"), xp.asarray([[-3e38]], dtype="float32"))


# Bad inputs (SPEC section 7) ----------------------------------------------------

ALL = [
    ("L2Distance.v2", {}),
    ("L1Distance.v1", {}),
    ("Huber.v1", {}),
    ("SmoothL1.v1", {}),
    ("LogCosh.v1", {}),
    ("PoissonNLL.v1", {}),
    ("PoissonNLL.v1", {"from_logits": True}),
]
CLASS_NAMES = {n: n.split(".")[0] for n, _ in ALL}


def good(xp, shape=(3, 2), dtype="float32"):
    return xp.asarray(numpy.full(shape, 0.5, dtype=dtype)), xp.asarray(numpy.full(shape, 1.0, dtype=dtype))


@pytest.mark.parametrize("name,config", ALL)
def test_bad_arrays(name, config, xp):
    loss_calc = resolve(name, **config)
    label = CLASS_NAMES[name]
    g, t = good(xp)
    with pytest.raises(ValueError, match=rf"Cannot calculate {label}: 'truths' must have shape \(3, 2\)"):
        loss_calc(g, t[:2])
    with pytest.raises(ValueError, match=rf"{label}: 'truths' must have shape"):
        loss_calc(g, t.reshape(2, 3))
    with pytest.raises(ValueError, match=rf"{label}: 'guesses' must be 1-dimensional or 2-dimensional"):
        loss_calc(g.reshape(3, 2, 1), t.reshape(3, 2, 1))
    with pytest.raises(ValueError, match=rf"{label}: 'guesses' must be 1-dimensional or 2-dimensional"):
        loss_calc(g[0, 0], t[0, 0])
    with pytest.raises(TypeError, match=rf"{label}: 'guesses' must have a float dtype"):
        loss_calc(g.astype("int32"), t)
    with pytest.raises(TypeError, match=rf"{label}: 'guesses' must be a numpy or cupy array"):
        loss_calc([[0.5, 0.5]] * 3, t)
    with pytest.raises(TypeError, match=rf"{label}: 'truths' must hold numbers"):
        loss_calc(g, t.astype("complex64"))
    with pytest.raises(TypeError, match=rf"{label}: 'truths' must be a \(nested\) list of numbers"):
        loss_calc(g, [["a", "b"]] * 3)
    with pytest.raises(TypeError, match=rf"{label}: 'truths' must be an array of numbers"):
        loss_calc(g, "truths")
    with pytest.raises(ValueError, match=rf"{label}: 'sample_weight' must have shape"):
        loss_calc(g, t, sample_weight=xp.ones((4,)))
    with pytest.raises(ValueError, match=rf"{label}: 'sample_weight' must be non-negative"):
        loss_calc(g, t, sample_weight=-xp.ones((3,)))
    with pytest.raises(TypeError, match=rf"{label}: 'guesses' must not be a Ragged"):
        loss_calc(Ragged(g, xp.asarray([1, 2], dtype="int32")), t)


@pytest.mark.parametrize("name,config", ALL)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["guesses", "truths"])
def test_non_finite_inputs(name, config, bad, where, xp):
    g, t = good(xp)
    target = g if where == "guesses" else t
    target[1, 1] = bad
    if name == "PoissonNLL.v1" and bad < 0 and (where == "truths" or not config):
        expected = "must be non-negative"  # a negative rate or count is refused first
    else:
        expected = "contains NaN or infinite values"
    with pytest.raises(ValueError, match=rf"{CLASS_NAMES[name]}: '{where}' {expected}"):
        resolve(name, **config)(g, t)
    with pytest.raises(ValueError, match=rf"{CLASS_NAMES[name]}: '{where}'"):
        resolve(name, **config).get_grad(g, t)


def test_poisson_refuses_negative_rates_and_counts(xp):
    g, t = good(xp)
    with pytest.raises(ValueError, match=r"PoissonNLL: 'guesses' must be non-negative \(rates; use from_logits=True"):
        PoissonNLL()(-g, t)
    PoissonNLL(from_logits=True)(-g, t)  # log-rates may be negative
    with pytest.raises(ValueError, match=r"PoissonNLL: 'truths' must be non-negative \(Poisson counts\)"):
        PoissonNLL(from_logits=True)(g, -t)


def test_gaussian_bad_inputs(xp):
    mean, truths = good(xp)
    var = xp.ones((3, 2), dtype="float32")
    loss_calc = GaussianNLL()
    with pytest.raises(TypeError, match=r"GaussianNLL: 'guesses' must be a tuple \(mean, var\)"):
        loss_calc(mean, truths)
    with pytest.raises(TypeError, match=r"GaussianNLL: 'guesses' must be a tuple \(mean, var\), got a tuple of 3"):
        loss_calc((mean, var, var), truths)
    with pytest.raises(ValueError, match=r"GaussianNLL: 'guesses\[1\]' must be non-negative \(a variance\)"):
        loss_calc((mean, var - 2), truths)
    with pytest.raises(ValueError, match=r"GaussianNLL: 'guesses\[1\]' \(the variance\) must have shape \(3, 2\) or \(3, 1\)"):
        loss_calc((mean, var[:, :1].T), truths)
    with pytest.raises(ValueError, match=r"GaussianNLL: 'guesses\[1\]' \(the variance\) must have shape"):
        loss_calc((mean, var[:2]), truths)
    with pytest.raises(TypeError, match=r"GaussianNLL: 'guesses\[1\]' must have a float dtype"):
        loss_calc((mean, var.astype("int64")), truths)
    with pytest.raises(TypeError, match=r"GaussianNLL: 'guesses\[0\]' must have a float dtype"):
        loss_calc((mean.astype("int64"), var), truths)
    with pytest.raises(ValueError, match=r"GaussianNLL: 'truths' must have shape \(3, 2\)"):
        loss_calc((mean, var), truths[:, :1])
    for i, arg in ((0, r"guesses\[0\]"), (1, r"guesses\[1\]")):
        for bad in (math.nan, math.inf):
            parts = [mean.copy(), var.copy()]
            parts[i][0, 0] = bad
            with pytest.raises(ValueError, match=rf"GaussianNLL: '{arg}' contains NaN or infinite values"):
                loss_calc(tuple(parts), truths)
    bad_truths = truths.copy()
    bad_truths[2, 0] = math.nan
    with pytest.raises(ValueError, match=r"GaussianNLL: 'truths' contains NaN or infinite values"):
        loss_calc((mean, var), bad_truths)


@pytest.mark.parametrize(
    "cls,arg,bad,error",
    [
        (Huber, "delta", 0.0, ValueError),
        (Huber, "delta", -1.0, ValueError),
        (Huber, "delta", math.inf, ValueError),
        (Huber, "delta", math.nan, ValueError),
        (Huber, "delta", "1", TypeError),
        (SmoothL1, "beta", -0.1, ValueError),
        (SmoothL1, "beta", math.inf, ValueError),
        (SmoothL1, "beta", True, TypeError),
        (PoissonNLL, "eps", 0.0, ValueError),
        (PoissonNLL, "eps", -1e-8, ValueError),
        (PoissonNLL, "eps", math.nan, ValueError),
        (PoissonNLL, "from_logits", 1, TypeError),
        (PoissonNLL, "full", "yes", TypeError),
        (GaussianNLL, "eps", 0.0, ValueError),
        (GaussianNLL, "eps", -1.0, ValueError),
        (GaussianNLL, "eps", math.inf, ValueError),
        (GaussianNLL, "full", None, TypeError),
        (L2Distance, "normalize", "no", TypeError),
    ],
)
def test_bad_settings(cls, arg, bad, error):
    with pytest.raises(error, match=rf"Cannot create {cls.name}: '{arg}'"):
        cls(**{arg: bad})


@pytest.mark.parametrize(
    "name,config",
    [
        ("Huber.v1", {"delta": "big"}),
        ("Huber.v1", {"beta": 1.0}),
        ("SmoothL1.v1", {"delta": 1.0}),
        ("L2Distance.v2", {"delta": 1.0}),
        ("PoissonNLL.v1", {"log_input": True}),
        ("GaussianNLL.v1", {"full": "maybe"}),
    ],
)
def test_config_validation_refuses_unknown_or_mistyped_settings(name, config):
    with pytest.raises(ConfigValidationError):
        resolve(name, **config)


def test_settings_from_config_reach_the_calculator():
    loss_calc = resolve("PoissonNLL.v1", from_logits=True, full=True, eps=0.25, normalize=False)
    assert (loss_calc.from_logits, loss_calc.full, loss_calc.eps, loss_calc.normalize) == (True, True, 0.25, False)
    assert resolve("Huber.v1", delta=0.5).delta == 0.5
    assert resolve("SmoothL1.v1", beta=0.0).beta == 0.0
    assert resolve("GaussianNLL.v1", eps=1e-3, full=True).eps == 1e-3


# Defects fixed on the shared core ------------------------------------------------

WEIGHTED_1D = [
    ("L2Distance.v2", {}),
    ("L1Distance.v1", {}),
    ("Huber.v1", {"delta": 0.7}),
    ("SmoothL1.v1", {"beta": 0.7}),
    ("LogCosh.v1", {}),
    ("PoissonNLL.v1", {"from_logits": True}),
    ("GaussianNLL.v1", {}),
]


def one_value_per_example(name, n=7, seed=11):
    rng = numpy.random.default_rng(seed)
    g, t = rng.normal(size=n), rng.normal(size=n)
    if name == "PoissonNLL.v1":
        t = numpy.round(abs(t) * 3)
    if name == "GaussianNLL.v1":
        g = (g, rng.uniform(0.2, 2.0, size=n))
    return g, t


@pytest.mark.parametrize("name,config", WEIGHTED_1D)
def test_sample_weight_n_1_with_1d_guesses(name, config, xp):
    """(N, 1) weights for (N,) guesses are one weight per example, as (N,)."""
    g, t = one_value_per_example(name)
    g = tuple(xp.asarray(a) for a in g) if isinstance(g, tuple) else xp.asarray(g)
    w = numpy.random.default_rng(2).uniform(0.1, 2.0, size=7)
    loss_calc = resolve(name, **config)
    flat = loss_calc(g, xp.asarray(t), sample_weight=xp.asarray(w))
    column = loss_calc(g, xp.asarray(t), sample_weight=xp.asarray(w[:, None]))
    assert flat[1] == column[1]
    for a, b in zip(flat[0] if isinstance(flat[0], tuple) else [flat[0]], column[0] if isinstance(column[0], tuple) else [column[0]]):
        assert to_numpy(a).tobytes() == to_numpy(b).tobytes()
    per_example = to_numpy(loss_calc.get_loss_per_example(g, xp.asarray(t)))
    assert flat[1] == pytest.approx(float((per_example * w).sum()) / 7, rel=1e-12)


def test_gaussian_variance_n_1_with_1d_mean(xp):
    """One variance per row as (N, 1) for a 1-d mean: as (N,), the gradient in the variance's shape."""
    (mean, var), t = one_value_per_example("GaussianNLL.v1")
    mean, var, t = xp.asarray(mean), xp.asarray(var), xp.asarray(t)
    (d_mean, d_var), loss = GaussianNLL()((mean, var[:, None]), t)
    (e_mean, e_var), expected = GaussianNLL()((mean, var), t)
    assert loss == expected
    assert d_var.shape == (7, 1)
    assert to_numpy(d_var).reshape(-1).tobytes() == to_numpy(e_var).tobytes()
    with pytest.raises(ValueError, match=r"GaussianNLL: 'guesses\[1\]' \(the variance\) must have shape \(7,\) or \(7, 1\)"):
        GaussianNLL()((mean, var[:3]), t)


LARGE = [("L1Distance.v1", {}), ("Huber.v1", {}), ("SmoothL1.v1", {}), ("LogCosh.v1", {}), ("SmoothL1.v1", {"beta": 0.0})]


@pytest.mark.parametrize("name,config", LARGE)
def test_large_float32_differences_give_the_float64_result(name, config, xp):
    """Losses linear in |d| stay finite at 1e20 in float32, and correct."""
    rng = numpy.random.default_rng(4)
    g, t = (rng.normal(size=(5, 3)) * 1e20).astype("float32"), (rng.normal(size=(5, 3)) * 1e20).astype("float32")
    grad, loss = resolve(name, **config)(xp.asarray(g), xp.asarray(t))
    expected_grad, expected = resolve(name, **config)(g.astype("float64"), t.astype("float64"))
    assert math.isfinite(loss) and loss == pytest.approx(expected, rel=1e-6)
    numpy.testing.assert_allclose(to_numpy(grad), expected_grad, rtol=1e-6)


def test_large_float32_losses_that_overflow_are_named_errors(xp):
    g = xp.asarray([[1e20, -1e20]], dtype="float32")
    t = xp.zeros((1, 2), dtype="float32")
    # 0.5 * (1e20)^2 does not fit a float32.
    with pytest.raises(ValueError, match=r"Cannot calculate L2Distance: 'guesses' give a loss that overflows float32"):
        L2Distance()(g, t)
    with pytest.raises(ValueError, match=r"Cannot calculate GaussianNLL: 'guesses' give a loss that overflows float32"):
        GaussianNLL()((g, xp.ones((1, 2), dtype="float32")), t)
    # ... while the same numbers in float64 are fine, and the variance scaled alike keeps GaussianNLL finite.
    assert L2Distance().get_loss(g.astype("float64"), t.astype("float64")) == pytest.approx(1e40, rel=1e-6)
    (d_mean, d_var), loss = GaussianNLL()((g, abs(g)), t)
    assert math.isfinite(loss) and bool(xp.isfinite(d_mean).all()) and bool(xp.isfinite(d_var).all())


def test_gradients_that_overflow_while_the_loss_does_not_are_named_errors(xp):
    # Rate 0, count 1e31: the loss -1e31 log(1e-8) fits a float32, the gradient 1 - 1e31 / 1e-8 does not.
    rates, counts = xp.zeros((1, 1), dtype="float32"), xp.full((1, 1), 1e31, dtype="float32")
    with pytest.raises(ValueError, match=r"Cannot calculate PoissonNLL: 'guesses' give a gradient that overflows float32"):
        PoissonNLL()(rates, counts)
    assert math.isfinite(PoissonNLL().get_loss(rates, counts))  # the loss alone is fine
    # Residual 1e15 with the variance clamped at 1e-6: d_var = 0.5 (1e6 - 1e42) overflows.
    mean, var = xp.full((1, 1), 1e15, dtype="float32"), xp.zeros((1, 1), dtype="float32")
    with pytest.raises(ValueError, match=r"Cannot calculate GaussianNLL: 'guesses\[1\]' give a gradient that overflows"):
        GaussianNLL()((mean, var), xp.zeros((1, 1), dtype="float32"))


def test_bool_truths_are_numbers(xp):
    """Truths go through the one input layer, which takes bools as 0 and 1."""
    g = xp.asarray([[0.2, 0.9], [0.4, 0.1]])
    t = xp.asarray([[False, True], [True, False]])
    assert L2Distance().get_loss(g, t) == L2Distance().get_loss(g, t.astype("float64"))


def _counting_checks(monkeypatch):
    from thinc_losses_plus import _inputs

    counts = {"checks": 0, "runs": 0}
    original_init, original_run = _inputs.Checks.__init__, _inputs.Checks.run

    def init(self, *args, **kwargs):
        counts["checks"] += 1
        original_init(self, *args, **kwargs)

    def run(self):
        counts["runs"] += 1
        return original_run(self)

    monkeypatch.setattr(_inputs.Checks, "__init__", init)
    monkeypatch.setattr(_inputs.Checks, "run", run)
    monkeypatch.setattr(_inputs, "check_loss_finite", lambda *a, **k: pytest.fail("a second check transfer"))
    return counts


@pytest.mark.parametrize("name,config", WEIGHTED_1D + [("PoissonNLL.v1", {})])
def test_one_checks_run_per_call_sample_weight_included(name, config, monkeypatch):
    """All value checks of a call (sample_weight's too) are brought to the host in one run."""
    g, t = one_value_per_example(name)
    if name == "PoissonNLL.v1" and not config:
        g = abs(g)
    loss_calc = resolve(name, **config)
    counts = _counting_checks(monkeypatch)
    for method in (loss_calc.__call__, loss_calc.get_grad, loss_calc.get_loss):
        method(g, t, sample_weight=numpy.ones(7))
    assert counts == {"checks": 3, "runs": 3}


LAYOUTS = {
    "fortran": lambda x: numpy.asfortranarray(x),
    "negative-strides": lambda x: numpy.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1],
    "sliced": lambda x: numpy.repeat(x, 2, axis=1)[:, ::2],
    "read-only": lambda x: _read_only(x),
}


def _read_only(x):
    x = x.copy()
    x.setflags(write=False)
    return x


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name,config", WEIGHTED_1D + [("PoissonNLL.v1", {})])
def test_every_input_in_any_layout_gives_the_same_bits(name, config, layout):
    """Guesses, truths, the variance and per-element sample weights, in any layout."""
    rng = numpy.random.default_rng(8)
    g, t = rng.normal(size=(6, 3)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")
    if name == "PoissonNLL.v1":
        t = numpy.round(abs(t) * 3)
        g = g if config else abs(g)
    if name == "GaussianNLL.v1":
        g = (g, rng.uniform(0.2, 2.0, size=(6, 3)).astype("float32"))
    w = rng.uniform(0.0, 2.0, size=(6, 3)).astype("float32")
    odd = LAYOUTS[layout]
    loss_calc = resolve(name, **config)
    expected = loss_calc(g, t, sample_weight=w)
    odd_g = tuple(odd(a) for a in g) if isinstance(g, tuple) else odd(g)
    got = loss_calc(odd_g, odd(t), sample_weight=odd(w))
    assert got[1] == expected[1]
    for a, b in zip(got[0] if isinstance(got[0], tuple) else [got[0]], expected[0] if isinstance(expected[0], tuple) else [expected[0]]):
        assert a.tobytes() == b.tobytes() and a.flags.c_contiguous == b.flags.c_contiguous


@pytest.mark.parametrize("weights", ["none", "elements", "rows"])
@pytest.mark.parametrize(
    "fn, settings",
    [
        ("absolute_error", {}),
        ("huber_error", {"delta": 0.7}),
        ("smooth_l1_error", {"beta": 0.3}),
        ("log_cosh_error", {}),
        ("poisson_nll", {}),
        ("poisson_nll", {"from_logits": True, "full": True}),
        ("gaussian_nll", {}),
        ("gaussian_nll", {"shared": True, "full": True}),
    ],
)
@pytest.mark.parametrize("want_grad", [True, False])
def test_row_blocks_give_the_bits_of_one_block(fn, settings, weights, want_grad, monkeypatch):
    """The maths runs in row blocks (peak memory: the gradient plus a few percent); the
    bits are those of one block of everything."""
    from thinc_losses_plus.functional import blocks
    from thinc_losses_plus.functional import regression as F

    rng = numpy.random.default_rng(0)
    n, c = 701, 97  # many blocks, borrowed and owned scratch, the last block short
    g, t = rng.normal(size=(n, c)).astype("float32"), rng.normal(size=(n, c)).astype("float32")
    settings = dict(settings)
    if fn == "poisson_nll":
        t = numpy.round(abs(t) * 3)
        g = g if settings.get("from_logits") else abs(g)
    if fn == "gaussian_nll":
        var = rng.uniform(0.0, 2.0, size=(n, 1) if settings.pop("shared", False) else (n, c)).astype("float32")
        g = (g, var)
    w = {"none": None, "elements": rng.uniform(size=(n, c)), "rows": rng.uniform(size=(n, 1))}[weights]
    w = None if w is None else w.astype("float32")
    assert len(list(blocks.scratch_blocks(numpy, numpy.empty((n, c)), 3))) > 5
    blocked = getattr(F, fn)(numpy, g, t, weights=w, divisor=3, want_grad=want_grad, **settings)
    monkeypatch.setattr(blocks, "block_rows", lambda shape, n_slots: max(1, int(shape[0])))
    assert len(list(blocks.scratch_blocks(numpy, numpy.empty((n, c)), 3))) == 1
    whole = getattr(F, fn)(numpy, g, t, weights=w, divisor=3, want_grad=want_grad, **settings)
    assert blocked[1].tobytes() == whole[1].tobytes()
    if want_grad:
        grads = zip(*(r[0] if isinstance(r[0], tuple) else (r[0],) for r in (blocked, whole)))
        assert all(a.tobytes() == b.tobytes() for a, b in grads)
    else:
        assert blocked[0] is None and whole[0] is None


@pytest.mark.parametrize(
    "name,config,shape",
    [
        ("L2Distance.v2", {}, (5, 3)),
        ("L1Distance.v1", {}, (5, 3)),
        ("Huber.v1", {"delta": 1e4}, (5, 3)),
        ("SmoothL1.v1", {"beta": 1e-4}, (5,)),
        ("LogCosh.v1", {}, (5, 3)),
        ("PoissonNLL.v1", {"from_logits": True}, (5, 3)),
        ("PoissonNLL.v1", {}, (5, 3)),
        ("GaussianNLL.v1", {}, (5, 3)),
    ],
)
def test_float16_guesses_with_extreme_values_give_finite_gradients(name, config, shape):
    """A gradient computed in float32 for float16 guesses saturates at float16's largest
    finite value when cast back, instead of rounding to inf."""
    big = float(numpy.finfo("float16").max)
    rng = numpy.random.default_rng(3)
    g = rng.uniform(-big, big, size=shape).astype("float16")
    t = (-g.astype("float32")).astype("float16")  # differences of up to 2x float16's range
    if name == "PoissonNLL.v1":
        g = numpy.full(shape, 11.0, "float16") if config else numpy.full(shape, 1e-4, "float16")
        t = numpy.full(shape, 6e4, "float16")
    guesses = g
    if name == "GaussianNLL.v1":
        guesses = (g, numpy.full(shape, 1e-4, "float16"))  # (mean - t) / var overflows float16
    loss_calc = resolve(name, normalize=False, **config)
    grad, loss = loss_calc(guesses, t)
    for gr, like in zip(grad if isinstance(grad, tuple) else (grad,), guesses if isinstance(guesses, tuple) else (g,)):
        assert gr.dtype == numpy.float16 and gr.shape == like.shape
        assert numpy.isfinite(gr).all(), (name, gr)
    assert numpy.isfinite(loss)


@pytest.mark.parametrize(
    "name,config",
    [
        ("L1Distance.v1", {}),
        ("Huber.v1", {}),
        ("SmoothL1.v1", {}),
        ("LogCosh.v1", {}),
        ("PoissonNLL.v1", {}),
        ("PoissonNLL.v1", {"from_logits": True, "full": True}),
        ("GaussianNLL.v1", {}),
        ("GaussianNLL.v1", {"full": True}),
    ],
)
def test_peak_memory_of_call_is_near_the_gradient(name, config):
    """SPEC section 8: at most 1.1x the gradient's bytes at 4096x50 (tracemalloc)."""
    from battery import call_memory_ratio

    rng = numpy.random.default_rng(0)
    g, t = rng.normal(size=(4096, 50)).astype("float32"), rng.normal(size=(4096, 50)).astype("float32")
    if name == "PoissonNLL.v1":
        t = numpy.round(abs(t) * 3)
        g = g if config else abs(g)
    if name == "GaussianNLL.v1":
        g = (g, rng.uniform(0.2, 2.0, size=(4096, 50)).astype("float32"))
    loss_calc = resolve(name, **config)
    assert call_memory_ratio(loss_calc, g, t) <= 1.1
