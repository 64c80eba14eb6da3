"""CTC: ours vs ``torch.nn.functional.ctc_loss`` forward+backward (PyTorch CPU, one thread).

A batch of 32 sequences of 50-200 steps over 30 classes (blank 0), label
sequences of 10-40 labels, float32. PyTorch's side is ``log_softmax`` of the
padded (T, N, C) logits, ``ctc_loss(reduction="mean")`` and ``backward()``: the
gradient w.r.t. the logits, which is what ours returns. SPEC section 8: ours
within 1.5x of PyTorch.
"""
import numpy
import torch
import torch.nn.functional as F
from thinc.api import registry

from harness import Entry

torch.set_num_threads(1)
N, C = 32, 30


def _inputs(seed=0, steps=(50, 200), labels=(10, 40)):
    """``steps`` / ``labels``: the (low, high) range of the sequence and label lengths."""
    rng = numpy.random.default_rng(seed)
    steps = rng.integers(steps[0], steps[1] + 1, size=N)
    lengths = rng.integers(labels[0], labels[1] + 1, size=N)
    logits = [rng.normal(scale=2.0, size=(t, C)).astype("float32") for t in steps]
    labels = [rng.integers(1, C, size=n) for n in lengths]
    return steps, lengths, logits, labels


def _torch_run(steps, lengths, logits, labels):
    padded = numpy.zeros((int(steps.max()), N, C), dtype="float32")
    for i, z in enumerate(logits):
        padded[: len(z), i] = z
    x = torch.tensor(padded, requires_grad=True)
    targets = torch.tensor(numpy.concatenate(labels))
    input_lengths, target_lengths = torch.tensor(steps), torch.tensor(lengths)

    def run():
        x.grad = None
        loss = F.ctc_loss(torch.log_softmax(x, -1), targets, input_lengths, target_lengths, reduction="mean")
        loss.backward()
        return x.grad, loss.item()

    return run


def ctc(from_logits, **shape):
    def setup():
        steps, lengths, logits, labels = _inputs(**shape)
        ours = registry.resolve({"loss": {"@losses": "CTC.v1", "from_logits": from_logits}})["loss"]
        guesses = logits
        if not from_logits:
            guesses = [numpy.exp(z - z.max(1, keepdims=True)) for z in logits]
            guesses = [(e / e.sum(1, keepdims=True)).astype("float32") for e in guesses]
        torch_run = _torch_run(steps, lengths, logits, labels)
        return {"ours": lambda: ours(guesses, labels), "torch ctc_loss fwd+bwd": torch_run}

    return setup


TARGET = {"torch ctc_loss fwd+bwd": 1.5}
CASE = f"{N} sequences of 50-200 steps, {C} classes, 10-40 labels"
#: SPEC section 8: no slower than ctc_loss where the recursion's Python steps dominate
#: (many steps, short labels; few steps, long labels).
NO_SLOWER = {"torch ctc_loss fwd+bwd": 1.0}
#: Peak memory is shown without a target: the forward-backward recursion needs its lattice,
#: T x (2L + 1) states per sequence in float64 (as ctc_loss keeps its log_alpha and log_beta),
#: which outgrows a T x C gradient whenever 2L + 1 > C / 2.
MEMORY = dict(memory=True, memory_target=None)
ENTRIES = [
    Entry("CTC.v1", f"{CASE}, from_logits", ctc(True), targets=TARGET, **MEMORY),
    Entry("CTC.v1", f"{CASE}, probabilities", ctc(False), targets=TARGET, **MEMORY),
    Entry("CTC.v1", f"{N} sequences of 200 steps, {C} classes, 5 labels, from_logits",
          ctc(True, steps=(200, 200), labels=(5, 5)), targets=NO_SLOWER, **MEMORY),
    Entry("CTC.v1", f"{N} sequences of 50 steps, {C} classes, 20 labels, from_logits",
          ctc(True, steps=(50, 50), labels=(20, 20)), targets=NO_SLOWER, **MEMORY),
]
