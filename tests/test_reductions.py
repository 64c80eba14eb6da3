"""The reductions, one spelling for every calculator, each against PyTorch's equivalent.

``normalize = true`` divides by N (``reduction = "examples"``, Thinc), by the
number of loss terms (``"elements"``, PyTorch's elementwise ``"mean"``), or by
the sum of the labels' weights (``"weights"``, PyTorch's weighted
cross-entropy ``"mean"``). ``normalize = false`` is PyTorch's ``"sum"``.
"""
import warnings

import numpy
import pytest
import torch
import torch.nn.functional as F
from thinc.api import registry

from thinc_losses_plus.entry_points import loss_entry_points

rng = numpy.random.default_rng(0)
N, C = 6, 4
X = rng.normal(size=(N, C))
T = rng.normal(size=(N, C))
P = 1 / (1 + numpy.exp(-X))
B = (rng.uniform(size=(N, C)) > 0.5).astype("float64")
RATES = rng.uniform(0.5, 2.0, size=(N, C))
COUNTS = rng.poisson(1.5, size=(N, C)).astype("float64")
VAR = rng.uniform(0.5, 2.0, size=(N, C))
Z = rng.normal(scale=2.0, size=(N, C))
Y = rng.integers(0, C, size=N)
W = [0.5, 2.0, 1.0, 3.0]
SOFT = numpy.exp(rng.normal(size=(N, C)))
SOFT /= SOFT.sum(axis=1, keepdims=True)


def _kl_mean(log_q, t):
    with warnings.catch_warnings():  # PyTorch warns that "mean" is not "batchmean": here it is meant
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(log_q, t, reduction="mean")


def build(name, **settings):
    return registry.resolve({"loss": {"@losses": name, **settings}})["loss"]


def torch_result(fn, *arrays):
    tensors = [torch.tensor(a, requires_grad=(i == 0)) for i, a in enumerate(arrays)]
    loss = fn(*tensors)
    loss.backward()
    return tensors[0].grad.numpy(), float(loss.detach())


ELEMENTWISE = [
    ("L2Distance.v2", {}, (X, T), lambda g, t: 0.5 * F.mse_loss(g, t, reduction="mean")),
    ("L1Distance.v1", {}, (X, T), lambda g, t: F.l1_loss(g, t, reduction="mean")),
    ("Huber.v1", {"delta": 0.7}, (X, T), lambda g, t: F.huber_loss(g, t, delta=0.7, reduction="mean")),
    ("SmoothL1.v1", {"beta": 0.7}, (X, T), lambda g, t: F.smooth_l1_loss(g, t, beta=0.7, reduction="mean")),
    ("BinaryCrossentropy.v1", {}, (P, B), lambda g, t: F.binary_cross_entropy(g, t, reduction="mean")),
    (
        "BinaryCrossentropy.v1",
        {"from_logits": True},
        (X, B),
        lambda g, t: F.binary_cross_entropy_with_logits(g, t, reduction="mean"),
    ),
    ("PoissonNLL.v1", {}, (RATES, COUNTS), lambda g, t: F.poisson_nll_loss(g, t, log_input=False, reduction="mean")),
    ("Hinge.v1", {}, (X, 2 * B - 1), lambda g, t: torch.clamp(1.0 - t * g, min=0).mean()),
    ("SquaredHinge.v1", {}, (X, 2 * B - 1), lambda g, t: (torch.clamp(1.0 - t * g, min=0) ** 2).mean()),
    (
        "KLDivergence.v1",
        {"from_logits": True},
        (Z, SOFT),
        lambda z, t: _kl_mean(torch.log_softmax(z, -1), t),
    ),
]


@pytest.mark.parametrize("name,settings,arrays,torch_fn", ELEMENTWISE, ids=[f"{e[0]}-{i}" for i, e in enumerate(ELEMENTWISE)])
def test_elements_is_torch_mean(name, settings, arrays, torch_fn):
    grad, loss = build(name, reduction="elements", **settings)(*arrays)
    expected_grad, expected_loss = torch_result(torch_fn, *arrays)
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    numpy.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-14)


def test_elements_of_gaussian_nll_is_torch_mean():
    loss_calc = build("GaussianNLL.v1", reduction="elements")
    grad, loss = loss_calc((X, VAR), T)
    mean = torch.tensor(X, requires_grad=True)
    var = torch.tensor(VAR, requires_grad=True)
    expected = F.gaussian_nll_loss(mean, torch.tensor(T), var, reduction="mean")
    expected.backward()
    assert loss == pytest.approx(float(expected.detach()), rel=1e-10)
    numpy.testing.assert_allclose(grad[0], mean.grad.numpy(), rtol=1e-9)
    numpy.testing.assert_allclose(grad[1], var.grad.numpy(), rtol=1e-9)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("missing", [False, True])
def test_weights_is_torch_weighted_cross_entropy_mean(smoothing, missing):
    labels = Y.copy()
    if missing:
        labels[[1, 4]] = -1
    settings = {"from_logits": True, "class_weights": W, "reduction": "weights", "label_smoothing": smoothing}
    if missing:
        settings["missing_value"] = -1
    grad, loss = build("SparseCategoricalCrossentropy.v4", **settings)(Z, labels)
    # PyTorch's label_smoothing e' spreads e'/C on every class: ours is e = e' (C-1)/C.
    torch_smoothing = smoothing * C / (C - 1)
    expected_grad, expected_loss = torch_result(
        lambda z: F.cross_entropy(
            z, torch.tensor(labels), weight=torch.tensor(W, dtype=torch.float64), ignore_index=-1, label_smoothing=torch_smoothing
        ),
        Z,
    )
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    numpy.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-14)


def test_weights_with_sample_weights_divides_by_their_product():
    sample = rng.uniform(0.5, 2.0, size=N)
    loss_calc = build("SparseCategoricalCrossentropy.v4", from_logits=True, class_weights=W, reduction="weights")
    loss = loss_calc.get_loss(Z, Y, sample_weight=sample)
    unnormalised = build("SparseCategoricalCrossentropy.v4", from_logits=True, class_weights=W, normalize=False)
    expected = unnormalised.get_loss(Z, Y, sample_weight=sample) / float((numpy.asarray(W)[Y] * sample).sum())
    assert loss == pytest.approx(expected, rel=1e-12)


def test_row_losses_take_elements_as_examples():
    """One loss per row: "elements" divides by N, as PyTorch's cross_entropy "mean"."""
    a = build("SparseCategoricalCrossentropy.v4", from_logits=True, reduction="elements")(Z, Y)
    b = build("SparseCategoricalCrossentropy.v4", from_logits=True)(Z, Y)
    assert a[1] == b[1] and a[0].tobytes() == b[0].tobytes()


def test_normalize_false_ignores_the_reduction():
    for reduction in ("examples", "elements"):
        loss = build("L1Distance.v1", normalize=False, reduction=reduction).get_loss(X, T)
        assert loss == pytest.approx(float(numpy.abs(X - T).sum()), rel=1e-12)


def test_every_registered_name_takes_weight_and_reduction():
    import inspect

    for name, ep in loss_entry_points().items():
        params = inspect.signature(ep.load()).parameters
        assert "weight" in params and params["weight"].default == 1.0, name
        assert "reduction" in params and params["reduction"].default == "examples", name


def test_a_reduction_a_loss_cannot_do_is_refused():
    with pytest.raises(ValueError, match="^Cannot create L2Distance: 'reduction' must be one of \\['examples', 'elements'\\]"):
        build("L2Distance.v2", reduction="weights")
    with pytest.raises(ValueError, match="'reduction' must be one of"):
        build("SparseCategoricalCrossentropy.v4", reduction="mean")


@pytest.mark.parametrize("name", sorted(loss_entry_points()))
def test_weight_scales_loss_and_gradient(name):
    from battery import inputs, leaves, to_host
    from cases import all_cases

    case = next(c for c in all_cases() if c.name == name)
    guesses, truths = inputs(case, numpy, "float64")
    plain = case.build()(guesses, truths)
    scaled = case.build(weight=2.5)(guesses, truths)
    assert scaled[1] == pytest.approx(2.5 * plain[1], rel=1e-12, abs=1e-300)
    for a, b in zip(leaves(to_host(scaled[0])), leaves(to_host(plain[0])), strict=True):
        numpy.testing.assert_allclose(a, 2.5 * b, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("reduction", ["examples", "elements", "weights"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("weight", [1.0, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_fast_call_equals_its_parts(reduction, normalize, weight, weighted):
    """``SparseCategoricalCrossentropy.__call__`` has a plain-case shortcut; under every
    reduction, ``normalize``, ``weight`` and ``sample_weight`` it gives the bits of
    ``get_grad`` and ``get_loss``, which go through the base class."""
    from thinc_losses_plus.categorical import SparseCategoricalCrossentropy

    rng = numpy.random.default_rng(3)
    guesses = rng.random((12, 7)).astype("float32")
    guesses /= guesses.sum(axis=1, keepdims=True)
    truths = rng.integers(0, 7, 12)
    sample_weight = rng.random(12).astype("float32") if weighted else None
    loss_calc = SparseCategoricalCrossentropy(reduction=reduction, normalize=normalize, weight=weight)
    grad, loss = loss_calc(guesses, truths, sample_weight=sample_weight)
    assert grad.tobytes() == loss_calc.get_grad(guesses, truths, sample_weight=sample_weight).tobytes()
    assert loss == loss_calc.get_loss(guesses, truths, sample_weight=sample_weight)
    divisor = {"examples": 12, "elements": 12, "weights": 12 if sample_weight is None else sample_weight.sum(dtype="float64")}
    expected = -(numpy.log(guesses[numpy.arange(12), truths].astype("float64") + 1e-9) * (1 if sample_weight is None else sample_weight)).sum()
    expected *= weight / (divisor[reduction] if normalize else 1)
    assert loss == pytest.approx(expected, rel=1e-5)
