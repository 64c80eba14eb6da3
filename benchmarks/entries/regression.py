"""Regression family: ours (``__call__``: gradient and loss) vs PyTorch CPU
forward+backward of the same loss (``reduction="sum"`` / N, our semantics),
and Thinc's own ``L2Distance.v1`` beside ``L2Distance.v2``."""
import numpy
import torch
import torch.nn.functional as F
from thinc.api import registry

from harness import MEMORY, SMALL_BATCH_MEMORY, Entry, copy_floor

torch.set_num_threads(1)
SIZES = [(4096, 50), (32768, 1000)]


def _resolve(name, **settings):
    return registry.resolve({"loss": {"@losses": name, **settings}})["loss"]


def _torch(fn, *arrays, n, grads=(0,)):
    """A callable running ``fn(*tensors) / n`` forward and backward."""
    tensors = [torch.from_numpy(a) for a in arrays]
    for i in grads:
        tensors[i].requires_grad_(True)

    def run():
        for i in grads:
            tensors[i].grad = None
        loss = fn(*tensors) / n
        loss.backward()
        return [tensors[i].grad for i in grads], loss.item()

    return run


def difference(name, torch_fn, **settings):
    def make(n, c):
        def setup():
            rng = numpy.random.default_rng(0)
            g = rng.normal(size=(n, c)).astype("float32")
            t = rng.normal(size=(n, c)).astype("float32")
            ours = _resolve(name, **settings)
            fns = {"ours": lambda: ours(g, t), "torch fwd+bwd": _torch(torch_fn, g, t, n=n)}
            if name == "L2Distance.v2":
                thinc_v1 = _resolve("L2Distance.v1")
                fns["thinc L2Distance.v1"] = lambda: thinc_v1(g, t)
            return copy_floor(fns, g)

        return setup

    return make


def poisson(from_logits):
    def make(n, c):
        def setup():
            rng = numpy.random.default_rng(0)
            counts = rng.poisson(2.0, size=(n, c)).astype("float32")
            if from_logits:
                g = rng.normal(size=(n, c)).astype("float32")
            else:
                g = rng.uniform(0.1, 4.0, size=(n, c)).astype("float32")
            ours = _resolve("PoissonNLL.v1", from_logits=from_logits)

            def torch_fn(x, y):
                return F.poisson_nll_loss(x, y, log_input=from_logits, reduction="sum")

            return {"ours": lambda: ours(g, counts), "torch fwd+bwd": _torch(torch_fn, g, counts, n=n)}

        return setup

    return make


def gaussian(n, c):
    def setup():
        rng = numpy.random.default_rng(0)
        mean = rng.normal(size=(n, c)).astype("float32")
        var = rng.uniform(0.2, 2.0, size=(n, c)).astype("float32")
        t = rng.normal(size=(n, c)).astype("float32")
        ours = _resolve("GaussianNLL.v1")

        def torch_fn(m, v, y):
            return F.gaussian_nll_loss(m, y, v, reduction="sum")

        return {
            "ours": lambda: ours((mean, var), t),
            "torch fwd+bwd": _torch(torch_fn, mean, var, t, n=n, grads=(0, 1)),
        }

    return setup


CALCULATORS = [
    ("L2Distance.v2", "", difference("L2Distance.v2", lambda g, t: 0.5 * F.mse_loss(g, t, reduction="sum"))),
    ("L1Distance.v1", "", difference("L1Distance.v1", lambda g, t: F.l1_loss(g, t, reduction="sum"))),
    ("Huber.v1", "", difference("Huber.v1", lambda g, t: F.huber_loss(g, t, reduction="sum"))),
    ("SmoothL1.v1", "", difference("SmoothL1.v1", lambda g, t: F.smooth_l1_loss(g, t, reduction="sum"))),
    ("LogCosh.v1", " (torch: autograd of log(cosh))", difference("LogCosh.v1", lambda g, t: torch.log(torch.cosh(g - t)).sum())),
    ("PoissonNLL.v1", " rates", poisson(False)),
    ("PoissonNLL.v1", " from_logits", poisson(True)),
    ("GaussianNLL.v1", " var per element", gaussian),
]

#: SPEC section 8: no slower than PyTorch, peak extra memory <= 1.1x the gradient.
TARGETS = {"torch fwd+bwd": 1.0}
NOTES = {"thinc L2Distance.v1": "gradient g - t; loss = sum of squared gradient (not 0.5 (g - t)^2), no checks"}
ENTRIES = [
    Entry(name, f"{n}x{c}{what}", make(n, c), targets=TARGETS, memory=True, memory_target=1.1, notes=NOTES)
    for n, c in SIZES
    for name, what, make in CALCULATORS
]
#: SPEC section 8: at 256x10 (a textcat batch) peak extra memory <= 1.5x the gradient; no time target.
ENTRIES += [
    Entry(name, f"256x10{what}", make(256, 10), memory=True, memory_target=1.5, notes=NOTES,
          bounds={MEMORY: SMALL_BATCH_MEMORY})
    for name, what, make in CALCULATORS
]
