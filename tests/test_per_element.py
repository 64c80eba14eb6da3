"""Per-element losses (``get_loss_per_element``) against PyTorch's ``reduction="none"``.

Elementwise losses give one term per element of the guesses, in their shape;
losses with one term per row give the per-example losses, ``(N,)``, as
PyTorch's ``cross_entropy(..., reduction="none")`` does. PyTorch CPU is the
oracle; where PyTorch has no such loss, the formula written in PyTorch is.
"""
import pickle

import numpy
import pytest
import torch
import torch.nn.functional as F
from thinc.api import registry

from thinc_losses_plus import L2Distance, LossCalculator
from thinc_losses_plus.testing import check_loss

rng = numpy.random.default_rng(0)
N, C = 6, 4
X = rng.normal(size=(N, C))
T = rng.normal(size=(N, C))
P = 1 / (1 + numpy.exp(-X))
B = (rng.uniform(size=(N, C)) > 0.5).astype("float64")
SIGNS = 2 * B - 1
RATES = rng.uniform(0.5, 2.0, size=(N, C))
COUNTS = rng.poisson(1.5, size=(N, C)).astype("float64")
VAR = rng.uniform(0.5, 2.0, size=(N, C))
Z = rng.normal(scale=2.0, size=(N, C))
Y = rng.integers(0, C, size=N)
W = [0.5, 2.0, 1.0, 3.0]
SOFT = numpy.exp(rng.normal(size=(N, C)))
SOFT /= SOFT.sum(axis=1, keepdims=True)
SOFT[0, 1] = 0.0  # 0 log 0 = 0
SOFT[0] /= SOFT[0].sum()


def build(name, **settings):
    return registry.resolve({"loss": {"@losses": name, **settings}})["loss"]


def tensors(*arrays):
    return [torch.tensor(a) for a in arrays]


def log_softmax(z):
    return torch.log_softmax(z, -1)


def focal(p, t, gamma, alpha=None):
    ce = F.binary_cross_entropy(p, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    return loss if alpha is None else (alpha * t + (1 - alpha) * (1 - t)) * loss


ELEMENTWISE = [
    ("L2Distance.v2", {}, (X, T), lambda g, t: 0.5 * F.mse_loss(g, t, reduction="none")),
    ("L1Distance.v1", {}, (X, T), lambda g, t: F.l1_loss(g, t, reduction="none")),
    ("Huber.v1", {"delta": 0.7}, (X, T), lambda g, t: F.huber_loss(g, t, delta=0.7, reduction="none")),
    ("SmoothL1.v1", {"beta": 0.7}, (X, T), lambda g, t: F.smooth_l1_loss(g, t, beta=0.7, reduction="none")),
    ("LogCosh.v1", {}, (X, T), lambda g, t: torch.log(torch.cosh(g - t))),
    ("PoissonNLL.v1", {}, (RATES, COUNTS), lambda g, t: F.poisson_nll_loss(g, t, log_input=False, reduction="none")),
    (
        "PoissonNLL.v1",
        {"from_logits": True, "full": True},
        (X, COUNTS),
        lambda g, t: F.poisson_nll_loss(g, t, log_input=True, full=True, reduction="none"),
    ),
    ("BinaryCrossentropy.v1", {}, (P, B), lambda g, t: F.binary_cross_entropy(g, t, reduction="none")),
    (
        "BinaryCrossentropy.v1",
        {"class_weights": W},
        (P, B),
        lambda g, t: F.binary_cross_entropy(g, t, weight=torch.tensor(W, dtype=g.dtype), reduction="none"),
    ),
    (
        "BinaryCrossentropy.v1",
        {"from_logits": True, "pos_weight": [0.5, 1.0, 2.0, 4.0], "class_weights": W},
        (X, B),
        lambda g, t: F.binary_cross_entropy_with_logits(
            g, t, weight=torch.tensor(W, dtype=g.dtype), pos_weight=torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=g.dtype),
            reduction="none",
        ),
    ),
    (
        "BinaryCrossentropy.v1",
        {"from_logits": True, "pos_weight": 3.0},
        (X, B),
        lambda g, t: F.binary_cross_entropy_with_logits(g, t, pos_weight=torch.tensor(3.0, dtype=g.dtype), reduction="none"),
    ),
    ("BinaryFocalCrossentropy.v1", {"gamma": 2.0, "alpha": 0.25}, (P, B), lambda g, t: focal(g, t, 2.0, 0.25)),
    (
        "BinaryFocalCrossentropy.v1",
        {"gamma": 1.5, "from_logits": True},
        (X, B),
        lambda g, t: focal(torch.sigmoid(g), t, 1.5),
    ),
    ("Hinge.v1", {"margin": 0.5}, (X, SIGNS), lambda g, t: torch.clamp(0.5 - t * g, min=0)),
    ("SquaredHinge.v1", {}, (X, SIGNS), lambda g, t: torch.clamp(1.0 - t * g, min=0) ** 2),
    ("Logistic.v1", {}, (X, SIGNS), lambda g, t: F.softplus(-t * g)),
    (
        "KLDivergence.v1",
        {"from_logits": True},
        (Z, SOFT),
        lambda z, t: F.kl_div(log_softmax(z), t, reduction="none"),
    ),
    (
        "KLDivergence.v1",
        {"from_logits": True, "temperature": 2.0},
        (Z, SOFT),
        lambda z, t: 4.0 * F.kl_div(log_softmax(z / 2.0), t, reduction="none"),
    ),
]


@pytest.mark.parametrize("name,settings,arrays,torch_fn", ELEMENTWISE, ids=[f"{e[0]}-{i}" for i, e in enumerate(ELEMENTWISE)])
def test_elementwise_is_torch_none(name, settings, arrays, torch_fn):
    loss_calc = build(name, **settings)
    per_element = loss_calc.get_loss_per_element(*arrays)
    expected = torch_fn(*tensors(*arrays)).numpy()
    assert per_element.shape == arrays[0].shape == expected.shape
    numpy.testing.assert_allclose(per_element, expected, rtol=1e-9, atol=1e-12)
    numpy.testing.assert_allclose(per_element.sum(axis=1), loss_calc.get_loss_per_example(*arrays), rtol=1e-12)


@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_is_torch_none(full):
    loss_calc = build("GaussianNLL.v1", full=full)
    per_element = loss_calc.get_loss_per_element((X, VAR), T)
    expected = F.gaussian_nll_loss(*tensors(X, T, VAR), full=full, reduction="none").numpy()
    assert per_element.shape == X.shape
    numpy.testing.assert_allclose(per_element, expected, rtol=1e-9, atol=1e-12)
    # One variance per row: still one term per element of the mean.
    shared = VAR[:, :1]
    per_element = loss_calc.get_loss_per_element((X, shared), T)
    expected = F.gaussian_nll_loss(*tensors(X, T, shared), full=full, reduction="none").numpy()
    numpy.testing.assert_allclose(per_element, expected, rtol=1e-9, atol=1e-12)


def test_elementwise_mean_of_the_terms_is_the_elements_reduction():
    """PyTorch: ``"mean"`` is the mean of ``"none"``; here ``reduction = "elements"`` is."""
    for name, settings, arrays, _ in ELEMENTWISE:
        terms = build(name, **settings).get_loss_per_element(*arrays)
        loss = build(name, reduction="elements", **settings).get_loss(*arrays)
        assert loss == pytest.approx(float(terms.mean()), rel=1e-12), name


def test_missing_entries_are_zero():
    truths = B.copy()
    truths[[0, 2, 5], [1, 3, 0]] = -1
    masked = truths == -1
    for name, settings in [
        ("BinaryCrossentropy.v1", {"from_logits": True, "pos_weight": 2.0}),
        ("BinaryFocalCrossentropy.v1", {"from_logits": True}),
        ("AsymmetricLoss.v1", {"from_logits": True}),
    ]:
        per_element = build(name, missing_value=-1, **settings).get_loss_per_element(X, truths)
        assert (per_element[masked] == 0).all(), name
        assert (per_element[~masked] > 0).all(), name
        plain = build(name, **settings).get_loss_per_element(X, numpy.where(masked, 0.0, truths))
        numpy.testing.assert_array_equal(per_element[~masked], plain[~masked])


def test_sample_weight_and_weight_multiply_each_term():
    loss_calc = build("Huber.v1", weight=2.5)
    plain = build("Huber.v1").get_loss_per_element(X, T)
    elements = rng.uniform(0.0, 2.0, size=(N, C))
    rows = rng.uniform(0.0, 2.0, size=N)
    numpy.testing.assert_allclose(loss_calc.get_loss_per_element(X, T), 2.5 * plain, rtol=1e-15)
    numpy.testing.assert_allclose(
        loss_calc.get_loss_per_element(X, T, sample_weight=elements), 2.5 * elements * plain, rtol=1e-14
    )
    for shape in [(N,), (N, 1)]:
        got = loss_calc.get_loss_per_element(X, T, sample_weight=rows.reshape(shape))
        numpy.testing.assert_allclose(got, 2.5 * rows[:, None] * plain, rtol=1e-14)
    got = loss_calc.get_loss_per_element(X, T, sample_weight=rows.tolist())
    numpy.testing.assert_allclose(got, 2.5 * rows[:, None] * plain, rtol=1e-14)
    numpy.testing.assert_allclose(
        loss_calc.get_loss_per_element(X, T, sample_weight=elements).sum(axis=1),
        loss_calc.get_loss_per_example(X, T, sample_weight=elements),
        rtol=1e-12,
    )


def test_a_bad_sample_weight_is_refused_by_the_calculator():
    with pytest.raises(ValueError, match=r"^Cannot calculate L2Distance: 'sample_weight' must have shape"):
        L2Distance().get_loss_per_element(X, T, sample_weight=numpy.ones(C))
    with pytest.raises(ValueError, match="'sample_weight'"):
        L2Distance().get_loss_per_element(X, T, sample_weight=-numpy.ones(N))
    with pytest.raises(TypeError, match="'sample_weight' must hold numbers"):
        L2Distance().get_loss_per_element(X, T, sample_weight=numpy.asarray(["a"] * N))


def test_shapes_dtypes_and_layouts():
    loss_calc = L2Distance()
    vector = loss_calc.get_loss_per_element(X[:, 0], T[:, 0])
    assert vector.shape == (N,)
    numpy.testing.assert_array_equal(vector, loss_calc.get_loss_per_example(X[:, 0], T[:, 0]))
    column = loss_calc.get_loss_per_element(X[:, :1], T[:, :1])
    assert column.shape == (N, 1)
    assert loss_calc.get_loss_per_element(X[:0], T[:0]).shape == (0, C)
    assert loss_calc.get_loss_per_element(X[:, :0], T[:, :0]).shape == (N, 0)
    low = loss_calc.get_loss_per_element(X.astype("float32"), T.astype("float32"))
    assert low.dtype == numpy.float32
    odd = loss_calc.get_loss_per_element(numpy.asfortranarray(X), T[::-1][::-1])
    assert odd.tobytes() == loss_calc.get_loss_per_element(X, T).tobytes()
    # normalize and reduction do not apply to the terms (nor to PyTorch's "none")
    for settings in ({"normalize": False}, {"reduction": "elements"}):
        assert build("L2Distance.v2", **settings).get_loss_per_element(X, T).tobytes() == odd.tobytes()


def test_pickled_calculator_gives_the_same_terms():
    loss_calc = build("BinaryCrossentropy.v1", from_logits=True, pos_weight=2.0)
    clone = pickle.loads(pickle.dumps(loss_calc))
    assert clone.get_loss_per_element(X, B).tobytes() == loss_calc.get_loss_per_element(X, B).tobytes()


# One term per row: the per-example losses, as PyTorch's "none" -------------------


ROW_LOSSES = [
    (
        "SparseCategoricalCrossentropy.v4",
        {"from_logits": True},
        (Z, Y),
        lambda z, y: F.cross_entropy(z, y, reduction="none"),
    ),
    (
        "SparseCategoricalCrossentropy.v4",
        {"from_logits": True, "class_weights": W, "missing_value": -1},
        (Z, numpy.where(numpy.arange(N) == 2, -1, Y)),
        lambda z, y: F.cross_entropy(z, y, weight=torch.tensor(W, dtype=z.dtype), ignore_index=-1, reduction="none"),
    ),
    (
        "SparseCategoricalCrossentropy.v4",
        {"from_log_probs": True},
        (Z - numpy.log(numpy.exp(Z).sum(axis=1, keepdims=True)), Y),
        lambda x, y: F.nll_loss(x, y, reduction="none"),
    ),
    (
        "CategoricalCrossentropy.v4",
        {"from_logits": True},
        (Z, SOFT),
        lambda z, t: F.cross_entropy(z, t, reduction="none"),
    ),
    (
        "MultiMargin.v1",
        {"margin": 0.5},
        (X, Y),
        lambda x, y: F.multi_margin_loss(x, y, margin=0.5, reduction="none"),
    ),
]


@pytest.mark.parametrize("name,settings,arrays,torch_fn", ROW_LOSSES, ids=[f"{e[0]}-{i}" for i, e in enumerate(ROW_LOSSES)])
def test_row_losses_are_torch_none(name, settings, arrays, torch_fn):
    loss_calc = build(name, **settings)
    per_element = loss_calc.get_loss_per_element(*arrays)
    expected = torch_fn(*tensors(*arrays)).numpy()
    assert per_element.shape == (N,) == expected.shape
    numpy.testing.assert_allclose(per_element, expected, rtol=1e-9, atol=1e-12)
    assert per_element.tobytes() == loss_calc.get_loss_per_example(*arrays).tobytes()


def test_embedding_losses_are_torch_none():
    x1, x2, x3 = rng.normal(size=(3, N, C))
    signs = numpy.where(numpy.arange(N) % 2 == 0, 1, -1)
    got = build("CosineEmbedding.v1", margin=0.2).get_loss_per_element((x1, x2), signs)
    expected = F.cosine_embedding_loss(*tensors(x1, x2, signs), margin=0.2, reduction="none").numpy()
    numpy.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    got = build("TripletMargin.v1", margin=0.5).get_loss_per_element((x1, x2, x3), None)
    expected = F.triplet_margin_loss(*tensors(x1, x2, x3), margin=0.5, reduction="none").numpy()
    numpy.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_ctc_is_torch_none():
    steps, labels = [5, 4, 6], [[1, 2], [3], [1, 1, 2]]
    logits = [rng.normal(size=(s, C)) for s in steps]
    got = build("CTC.v1", from_logits=True).get_loss_per_element(logits, labels)
    padded = numpy.zeros((max(steps), len(steps), C))
    for i, z in enumerate(logits):
        padded[: len(z), i] = z
    expected = F.ctc_loss(
        log_softmax(torch.tensor(padded)),
        torch.tensor([c for seq in labels for c in seq]),
        torch.tensor(steps),
        torch.tensor([len(seq) for seq in labels]),
        reduction="none",
    ).numpy()
    numpy.testing.assert_allclose(numpy.asarray(got, dtype="float64").reshape(-1), expected, rtol=1e-9)


class Squares(LossCalculator):
    """A user's elementwise loss: only ``compute`` and ``elementwise = True``."""

    name = "Squares"
    elementwise = True

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        d = guesses - truths
        w = 1.0 if sample_weight is None else (sample_weight.reshape(-1, 1) if sample_weight.ndim == 1 else sample_weight)
        return (2 * d * w / divisor if want_grad else None), (d * d * w).sum(axis=1)


def test_a_custom_elementwise_loss_gets_its_terms_from_compute():
    per_element = Squares().get_loss_per_element(X, T)
    numpy.testing.assert_allclose(per_element, (X - T) ** 2, rtol=1e-15)
    check_loss(Squares(), X, T)


class WrongSquares(Squares):
    """Declares elementwise terms, but its per-example losses are not their row sums."""

    name = "WrongSquares"

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        grad, per_example = super().compute(guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad)
        return grad, per_example if sample_weight is None or sample_weight.ndim == 1 else per_example * 0.5


def test_check_loss_checks_the_terms():
    with pytest.raises(AssertionError, match="^per-element: "):
        check_loss(WrongSquares(), X, T)


# One pass: the calculators that have their terms at hand -------------------------

from thinc_losses_plus._core import probe_elements  # noqa: E402

#: Every elementwise calculator whose terms come from one evaluation.
ONE_PASS = [
    *[(name, settings, arrays) for name, settings, arrays, _ in ELEMENTWISE if not name.startswith("KLDivergence")],
    ("GaussianNLL.v1", {"full": True}, ((X, VAR), T)),
    ("GaussianNLL.v1", {}, ((X, VAR[:, :1]), T)),
    ("BinaryCrossentropy.v1", {"label_smoothing": 0.1, "missing_value": -1}, (P, numpy.where(X > 1, -1, B))),
    ("BinaryFocalCrossentropy.v1", {"gamma": 2.0, "alpha": 0.25, "from_logits": True}, (X, B)),
    ("BinaryFocalCrossentropy.v1", {"gamma": 0.5}, (P, B)),
    ("BinaryCrossentropy.v1", {"pos_weight": 2.0}, (P, B)),
    ("SmoothL1.v1", {"beta": 0.0}, (X, T)),
    ("AsymmetricLoss.v1", {}, (P, B)),
    ("AsymmetricLoss.v1", {"from_logits": True, "clip": 0.0, "missing_value": -1}, (X, numpy.where(X > 1, -1, B))),
    ("Hinge.v1", {}, (X, B)),
]


@pytest.mark.parametrize("name,settings,arrays", ONE_PASS, ids=[f"{e[0]}-{i}" for i, e in enumerate(ONE_PASS)])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_one_pass_terms_are_the_probed_terms(name, settings, arrays, dtype):
    """The one evaluation of an overriding ``evaluate_per_element`` gives the terms that
    ``probe_elements`` asks ``evaluate`` for, column by column (to rounding: a term
    written out and a row sum of one non-zero term round the same, but some families
    sum a row as two dot products)."""
    loss_calc = build(name, **settings)
    assert type(loss_calc).evaluate_per_element is not LossCalculator.evaluate_per_element
    guesses, truths = arrays
    cast = lambda a: a.astype(dtype)  # noqa: E731
    guesses = tuple(cast(g) for g in guesses) if isinstance(guesses, tuple) else cast(guesses)
    first = guesses[0] if isinstance(guesses, tuple) else guesses
    rtol = {"float64": 1e-13, "float32": 1e-5, "float16": 1e-5}[dtype]
    weights = [None, rng.uniform(0.0, 2.0, size=N), rng.uniform(0.0, 2.0, size=(N, 1)), rng.uniform(0.0, 2.0, size=(N, C))]
    for sample_weight in weights:
        one = loss_calc.evaluate_per_element(guesses, truths, sample_weight=sample_weight)
        probed = probe_elements(loss_calc, guesses, truths, sample_weight=sample_weight)
        assert one.shape == probed.shape == first.shape and one.dtype == probed.dtype
        numpy.testing.assert_allclose(one, probed, rtol=rtol, atol=1e-6 if dtype != "float64" else 1e-13)
    if any(isinstance(v, list) for v in settings.values()):
        return  # one setting per column: the shapes below have other columns
    # 1-d guesses, a single column and no rows
    for g, t in [(first[:, 0], truths[:, 0]), (first[:, :1], truths[:, :1]), (first[:0], truths[:0])]:
        if isinstance(guesses, tuple):
            g = (g, guesses[1][: len(g), :1] if g.ndim == 2 else guesses[1][: len(g), 0])
        one = loss_calc.evaluate_per_element(g, t)
        probed = probe_elements(loss_calc, g, t)
        assert one.shape == probed.shape
        numpy.testing.assert_allclose(one, probed, rtol=rtol, atol=1e-6 if dtype != "float64" else 1e-13)


def test_one_pass_refuses_what_evaluate_refuses():
    from thinc.types import Ragged

    for name in ["Huber.v1", "BinaryCrossentropy.v1"]:
        loss_calc = build(name)
        with pytest.raises(TypeError, match="must not be a Ragged"):
            loss_calc.get_loss_per_element(Ragged(P, numpy.asarray([N], dtype="int32")), B)
        with pytest.raises((TypeError, ValueError), match=f"^Cannot calculate {loss_calc.name}"):
            loss_calc.get_loss_per_element(P, B[:, :2])
