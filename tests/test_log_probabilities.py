"""Log-probability guesses (PyTorch's NLLLoss, Gluon's from_logits=True) for the softmax family."""
import numpy
import pytest
import torch
from thinc.api import registry

from thinc_losses_plus import CategoricalCrossentropy, SequenceCategoricalCrossentropy, SparseCategoricalCrossentropy
from thinc_losses_plus.testing import check_loss

rng = numpy.random.default_rng(0)
N, C = 7, 5
LOGITS = rng.normal(scale=2.0, size=(N, C))
LOG_PROBS = LOGITS - numpy.log(numpy.exp(LOGITS).sum(axis=1, keepdims=True))
LABELS = rng.integers(0, C, size=N)
WEIGHTS = rng.uniform(0.5, 2.0, size=C)


def torch_nll(log_probs, labels, weight=None, smoothing=0.0):
    x = torch.tensor(log_probs, requires_grad=True)
    y = torch.tensor(labels)
    if smoothing:
        target = torch.full((len(labels), log_probs.shape[1]), smoothing / (log_probs.shape[1] - 1), dtype=x.dtype)
        target[torch.arange(len(labels)), y] = 1.0 - smoothing
        w = torch.ones(log_probs.shape[1], dtype=x.dtype) if weight is None else torch.tensor(weight)
        loss = -(target * w * x).sum() / len(labels)
    else:
        loss = torch.nn.functional.nll_loss(
            x, y, weight=None if weight is None else torch.tensor(weight), reduction="sum"
        ) / len(labels)
    loss.backward()
    return x.grad.numpy(), float(loss.detach())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sparse_matches_torch_nll_loss(weighted, smoothing):
    weights = WEIGHTS.tolist() if weighted else None
    loss_calc = SparseCategoricalCrossentropy(from_log_probs=True, class_weights=weights, label_smoothing=smoothing)
    grad, loss = loss_calc(LOG_PROBS, LABELS)
    expected_grad, expected_loss = torch_nll(LOG_PROBS, LABELS, None if weights is None else WEIGHTS, smoothing)
    numpy.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
    assert loss == pytest.approx(expected_loss, rel=1e-12)


def test_dense_one_hot_equals_sparse():
    dense = CategoricalCrossentropy(from_log_probs=True)(LOG_PROBS, numpy.eye(C)[LABELS])
    sparse = SparseCategoricalCrossentropy(from_log_probs=True)(LOG_PROBS, LABELS)
    numpy.testing.assert_allclose(dense[0], sparse[0], rtol=1e-12)
    assert dense[1] == pytest.approx(sparse[1], rel=1e-12)


def test_same_loss_as_logits_and_probabilities():
    from_logits = SparseCategoricalCrossentropy(from_logits=True).get_loss(LOGITS, LABELS)
    from_log_probs = SparseCategoricalCrossentropy(from_log_probs=True).get_loss(LOG_PROBS, LABELS)
    assert from_log_probs == pytest.approx(from_logits, rel=1e-12)


def test_sequence_and_missing_rows_from_a_config():
    loss_calc = registry.resolve(
        {"loss": {"@losses": "SequenceCategoricalCrossentropy.v4", "from_log_probs": True, "missing_value": -1}}
    )["loss"]
    labels = LABELS.copy()
    labels[2] = -1
    grads, _ = loss_calc([LOG_PROBS[:3], LOG_PROBS[3:]], [labels[:3], labels[3:]])
    assert (grads[0][2] == 0).all()
    assert isinstance(loss_calc, SequenceCategoricalCrossentropy) and loss_calc.from_log_probs


def test_battery_exact_gradient():
    check_loss(SparseCategoricalCrossentropy(from_log_probs=True, label_smoothing=0.1), LOG_PROBS, LABELS)
    check_loss(CategoricalCrossentropy(from_log_probs=True), LOG_PROBS, numpy.eye(C)[LABELS])


@pytest.mark.parametrize(
    "settings,error,match",
    [
        ({"from_log_probs": True, "from_logits": True}, ValueError, "'from_log_probs' and 'from_logits' exclude each other"),
        ({"from_log_probs": True, "neg_prefix": "!"}, ValueError, "'neg_prefix' needs probabilities or logits"),
        ({"from_log_probs": 1}, TypeError, "'from_log_probs' must be a bool"),
    ],
)
def test_bad_settings(settings, error, match):
    with pytest.raises(error, match=f"^Cannot create SparseCategoricalCrossentropy: {match}"):
        SparseCategoricalCrossentropy(**settings)


def test_positive_or_nan_guesses_are_refused():
    loss_calc = SparseCategoricalCrossentropy(from_log_probs=True)
    with pytest.raises(ValueError, match="'guesses' must be log-probabilities \\(<= 0\\)"):
        loss_calc(numpy.exp(LOG_PROBS), LABELS)
    bad = LOG_PROBS.copy()
    bad[0, 0] = numpy.nan
    with pytest.raises(ValueError, match="'guesses' contains NaN"):
        loss_calc(bad, LABELS)
