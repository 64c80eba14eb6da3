"""Imbalance and noisy-label losses: ours vs PyTorch CPU autograd of the same formula, forward+backward.

PyTorch has none of these losses built in, so its side is autograd of the
formula each class documents (Ridnik et al.'s official code for the
asymmetric loss), on one thread. Sizes: 4096x50 (a spaCy batch with many
labels) and 32768x1000.
"""
import numpy
import torch
from thinc.api import registry

from harness import Entry

torch.set_num_threads(1)
SIZES = [(4096, 50), (32768, 1000)]


def _resolve(name, **settings):
    return registry.resolve({"loss": {"@losses": name, **settings}})["loss"]


def _sigmoid_inputs(n, c, seed=0):
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, c)).astype("float32")
    p = (1 / (1 + numpy.exp(-z))).astype("float32")
    t = (rng.uniform(size=(n, c)) < 0.1).astype("float32")  # sparse positives
    return z, p, t


def _softmax_inputs(n, c, seed=0):
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, c)).astype("float32")
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return z, (e / e.sum(axis=1, keepdims=True)).astype("float32"), rng.integers(0, c, size=n)


def _torch_run(guesses, loss_fn):
    """forward + backward of ``loss_fn(leaf)`` on a leaf tensor, gradient reset each call."""
    x = torch.tensor(guesses, requires_grad=True)

    def run():
        x.grad = None
        loss = loss_fn(x)
        loss.backward()
        return x.grad, loss.item()

    return run


def dice(n, c, average, from_logits):
    def setup():
        z, p, t = _sigmoid_inputs(n, c)
        ours = _resolve("Dice.v1", average=average, from_logits=from_logits)
        tt = torch.tensor(t)
        dim = 1 if average == "samples" else 0

        def formula(x):
            q = torch.sigmoid(x) if from_logits else x
            losses = 1 - (2 * (q * tt).sum(dim) + 1.0) / (q.sum(dim) + tt.sum(dim) + 1.0)
            return losses.sum() / losses.shape[0]

        guesses = z if from_logits else p
        return {"ours": lambda: ours(guesses, t), "torch autograd fwd+bwd": _torch_run(guesses, formula)}

    return setup


def tversky(n, c):
    def setup():
        _, p, t = _sigmoid_inputs(n, c)
        ours = _resolve("Tversky.v1", average="macro")
        tt = torch.tensor(t)

        def formula(x):
            tp, fp, fn = (x * tt).sum(0), (x * (1 - tt)).sum(0), ((1 - x) * tt).sum(0)
            return (1 - (tp + 1.0) / (tp + 0.3 * fp + 0.7 * fn + 1.0)).mean()

        return {"ours": lambda: ours(p, t), "torch autograd fwd+bwd": _torch_run(p, formula)}

    return setup


def asymmetric(n, c, from_logits):
    def setup():
        z, p, t = _sigmoid_inputs(n, c)
        ours = _resolve("AsymmetricLoss.v1", from_logits=from_logits)
        tt = torch.tensor(t)

        def official(x):  # Alibaba-MIIL/ASL AsymmetricLoss.forward, gamma_pos 0, gamma_neg 4, clip 0.05
            xs_pos = torch.sigmoid(x) if from_logits else x
            xs_neg = (1 - xs_pos + 0.05).clamp(max=1)
            loss = tt * torch.log(xs_pos.clamp(min=1e-8)) + (1 - tt) * torch.log(xs_neg.clamp(min=1e-8))
            pt = xs_pos * tt + xs_neg * (1 - tt)
            loss = loss * torch.pow(1 - pt, 4.0 * (1 - tt))
            return -loss.sum() / x.shape[0]

        guesses = z if from_logits else p
        return {"ours": lambda: ours(guesses, t), "torch autograd (official code) fwd+bwd": _torch_run(guesses, official)}

    return setup


def generalized_ce(n, c, from_logits):
    def setup():
        z, p, y = _softmax_inputs(n, c)
        ours = _resolve("GeneralizedCrossentropy.v1", from_logits=from_logits)
        yt = torch.tensor(y)
        rows = torch.arange(n)

        def formula(x):  # on the logits: the softmax family's gradient is with respect to them
            log_p_y = torch.log_softmax(x, dim=1)[rows, yt]
            return (-torch.expm1(0.7 * log_p_y) / 0.7).sum() / n

        guesses = z if from_logits else p
        return {"ours": lambda: ours(guesses, y), "torch autograd fwd+bwd (logits)": _torch_run(z, formula)}

    return setup


#: SPEC section 8: peak extra memory <= 1.1x the gradient at 4096x50 and 32768x1000.
MEM = dict(memory=True, memory_target=1.1)
ENTRIES = []
for _n, _c in SIZES:
    ENTRIES += [
        Entry("Dice.v1", f"{_n}x{_c} probabilities, per example", dice(_n, _c, "samples", False), **MEM),
        Entry("Dice.v1", f"{_n}x{_c} from_logits, macro", dice(_n, _c, "macro", True), **MEM),
        Entry("Tversky.v1", f"{_n}x{_c} probabilities, macro", tversky(_n, _c), **MEM),
        Entry("AsymmetricLoss.v1", f"{_n}x{_c} probabilities, paper settings", asymmetric(_n, _c, False), **MEM),
        Entry("AsymmetricLoss.v1", f"{_n}x{_c} from_logits, paper settings", asymmetric(_n, _c, True), **MEM),
        Entry("GeneralizedCrossentropy.v1", f"{_n}x{_c} probabilities, int labels", generalized_ce(_n, _c, False), **MEM),
        Entry("GeneralizedCrossentropy.v1", f"{_n}x{_c} from_logits, int labels", generalized_ce(_n, _c, True), **MEM),
    ]
