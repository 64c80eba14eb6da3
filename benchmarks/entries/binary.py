"""Sigmoid family and margin losses: ours vs PyTorch CPU forward+backward (same thread count).

Multi-label cases are 4096x50 (a spaCy ``textcat_multilabel`` batch with many
labels); the PyTorch side is the equivalent functional loss, or autograd of
the defining formula where PyTorch has none (focal: torchvision's formula).
"""
import numpy
import torch
import torch.nn.functional as F
from thinc.api import registry

from harness import MEMORY, SMALL_BATCH_MEMORY, Entry, copy_floor

torch.set_num_threads(1)
N, C = 4096, 50
LARGE = (32768, 1000)


def _resolve(name, **settings):
    return registry.resolve({"loss": {"@losses": name, **settings}})["loss"]


def _inputs(seed=0, n=N, c=C):
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, c)).astype("float32")
    p = (1 / (1 + numpy.exp(-z))).astype("float32")
    t = (rng.uniform(size=(n, c)) < 0.1).astype("float32")  # sparse positives
    return z, p, t


def _torch_run(guesses, loss_fn):
    """forward + backward of ``loss_fn(leaf)`` on a leaf tensor, gradient reset each call."""
    x = torch.tensor(guesses, requires_grad=True)

    def run():
        x.grad = None
        loss = loss_fn(x)
        loss.backward()
        return x.grad, loss.item()

    return run


def bce_probabilities(n=N, c=C):
    def setup():
        _, p, t = _inputs(n=n, c=c)
        ours = _resolve("BinaryCrossentropy.v1")
        tt = torch.tensor(t)
        fns = {
            "ours": lambda: ours(p, t),
            "torch binary_cross_entropy fwd+bwd": _torch_run(
                p, lambda x: F.binary_cross_entropy(x, tt, reduction="sum") / n
            ),
        }
        return copy_floor(fns, p)

    return setup


def bce_logits_pos_weight(n=N, c=C):
    def setup():
        z, _, t = _inputs(n=n, c=c)
        pos_weight = [float(w) for w in numpy.linspace(1.0, 5.0, c)]
        ours = _resolve("BinaryCrossentropy.v1", from_logits=True, pos_weight=pos_weight)
        tt, pw = torch.tensor(t), torch.tensor(pos_weight, dtype=torch.float32)
        fns = {
            "ours": lambda: ours(z, t),
            "torch binary_cross_entropy_with_logits fwd+bwd": _torch_run(
                z, lambda x: F.binary_cross_entropy_with_logits(x, tt, pos_weight=pw, reduction="sum") / n
            ),
        }
        return copy_floor(fns, z)

    return setup


def focal_logits(n=N, c=C):
    def setup():
        z, _, t = _inputs(n=n, c=c)
        ours = _resolve("BinaryFocalCrossentropy.v1", from_logits=True, gamma=2.0, alpha=0.25)
        tt = torch.tensor(t)

        def torchvision_formula(x):
            p = torch.sigmoid(x)
            ce = F.binary_cross_entropy_with_logits(x, tt, reduction="none")
            p_t = p * tt + (1 - p) * (1 - tt)
            alpha_t = 0.25 * tt + 0.75 * (1 - tt)
            return (alpha_t * ce * (1 - p_t) ** 2).sum() / n

        return {"ours": lambda: ours(z, t), "torch autograd (torchvision formula) fwd+bwd": _torch_run(z, torchvision_formula)}

    return setup


def _signs(t):
    return 2 * t - 1


def hinge(squared):
    def setup():
        z, _, t = _inputs()
        ours = _resolve("SquaredHinge.v1" if squared else "Hinge.v1")
        y = torch.tensor(_signs(t))

        def formula(x):
            h = torch.clamp(1 - y * x, min=0)
            return (h * h if squared else h).sum() / N

        return {"ours": lambda: ours(z, t), "torch autograd fwd+bwd": _torch_run(z, formula)}

    return setup


def logistic():
    z, _, t = _inputs()
    ours = _resolve("Logistic.v1", label_format="binary")
    y = torch.tensor(_signs(t))
    return {"ours": lambda: ours(z, t), "torch softplus fwd+bwd": _torch_run(z, lambda x: F.softplus(-y * x).sum() / N)}


def multi_margin(p):
    def setup():
        z, _, _ = _inputs()
        labels = numpy.random.default_rng(1).integers(0, C, size=N)
        ours = _resolve("MultiMargin.v1", p=p)
        yt = torch.tensor(labels)
        return {
            "ours": lambda: ours(z, labels),
            "torch multi_margin_loss fwd+bwd": _torch_run(z, lambda x: F.multi_margin_loss(x, yt, p=p)),
        }

    return setup


#: SPEC section 8: no slower than PyTorch, peak extra memory <= 1.1x the gradient
#: (1.5x at 256x10, where no time target applies).
MEM = dict(memory=True, memory_target=1.1)
SMALL = (256, 10)


def _entry(name, case, setup, torch_label, bound=""):
    """An entry whose PyTorch comparison ``torch_label`` carries the SPEC's "no slower" target
    (``bound``: what bounds the row when it misses)."""
    return Entry(name, case, setup, targets={torch_label: 1.0}, bounds={torch_label: bound} if bound else {}, **MEM)


LOGISTIC_BOUND = (
    "Within noise of torch (0.93-1.10 over fresh-process runs on a quiet machine): ours also checks the "
    "scores (NaN, inf) and the labels (0/1), about 190 us of the ~850 us call, which torch does not; the "
    "maths itself is 13 passes over the batch in row blocks."
)


BIG = f"{LARGE[0]}x{LARGE[1]}"
BCE, BCE_LOGITS = "torch binary_cross_entropy fwd+bwd", "torch binary_cross_entropy_with_logits fwd+bwd"
AUTOGRAD, MARGIN = "torch autograd fwd+bwd", "torch multi_margin_loss fwd+bwd"
ENTRIES = [
    _entry("BinaryCrossentropy.v1", f"{N}x{C} probabilities", bce_probabilities(), BCE),
    _entry("BinaryCrossentropy.v1", f"{BIG} probabilities", bce_probabilities(*LARGE), BCE),
    _entry("BinaryCrossentropy.v1", f"{N}x{C} from_logits, per-column pos_weight", bce_logits_pos_weight(), BCE_LOGITS),
    _entry("BinaryCrossentropy.v1", f"{BIG} from_logits, per-column pos_weight", bce_logits_pos_weight(*LARGE),
           BCE_LOGITS),
    _entry("BinaryFocalCrossentropy.v1", f"{N}x{C} from_logits, gamma 2, alpha 0.25", focal_logits(),
           "torch autograd (torchvision formula) fwd+bwd"),
    _entry("BinaryFocalCrossentropy.v1", f"{BIG} from_logits, gamma 2, alpha 0.25", focal_logits(*LARGE),
           "torch autograd (torchvision formula) fwd+bwd"),
    _entry("Hinge.v1", f"{N}x{C} 0/1 labels", hinge(squared=False), AUTOGRAD),
    _entry("SquaredHinge.v1", f"{N}x{C} 0/1 labels", hinge(squared=True), AUTOGRAD),
    _entry("Logistic.v1", f"{N}x{C} binary labels", logistic, "torch softplus fwd+bwd", LOGISTIC_BOUND),
    _entry("MultiMargin.v1", f"{N}x{C} class indices, p=1", multi_margin(1), MARGIN),
    _entry("MultiMargin.v1", f"{N}x{C} class indices, p=2", multi_margin(2), MARGIN),
]
ENTRIES += [
    Entry(name, f"{SMALL[0]}x{SMALL[1]} {what}", make(*SMALL), memory=True, memory_target=1.5,
          bounds={MEMORY: SMALL_BATCH_MEMORY})
    for name, what, make in [
        ("BinaryCrossentropy.v1", "probabilities", bce_probabilities),
        ("BinaryCrossentropy.v1", "from_logits, per-column pos_weight", bce_logits_pos_weight),
        ("BinaryFocalCrossentropy.v1", "from_logits, gamma 2, alpha 0.25", focal_logits),
    ]
]
