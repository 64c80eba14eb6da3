"""Softmax family: ours vs Thinc's CategoricalCrossentropy.v3 and PyTorch CPU (SPEC section 8)."""
import numpy
import torch
import torch.nn.functional as F
from thinc.api import registry

from harness import Entry

torch.set_num_threads(1)
SIZES = [(4096, 50, "spaCy tagger batch"), (256, 10, "textcat"), (32768, 1000, "large")]


def _inputs(n, c, seed=0):
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, c)).astype("float32")
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).astype("float32")
    y = rng.integers(0, c, size=n)
    return z, p, y


def _resolve(name, **settings):
    return registry.resolve({"loss": {"@losses": name, **settings}})["loss"]


def _torch_cross_entropy(z, y):
    zt = torch.tensor(z, requires_grad=True)
    yt = torch.tensor(y)

    def run():
        zt.grad = None
        loss = F.cross_entropy(zt, yt)
        loss.backward()
        return zt.grad, loss.item()

    return run


#: From this many elements on, the sparse path is compared with one numpy copy
#: of the guesses (the memory-bound floor: the gradient must be written once).
FLOOR_ELEMENTS = 10**7


def with_copy_floor(fns, guesses):
    """Add the numpy-copy floor to a large entry's comparisons."""
    if guesses.size >= FLOOR_ELEMENTS:
        fns["numpy copy of guesses"] = lambda: guesses.copy()
    return fns


def sparse_int(n, c):
    def setup():
        _, p, y = _inputs(n, c)
        y32 = y.astype("int32")
        ours = _resolve("SparseCategoricalCrossentropy.v4")
        thinc = _resolve("CategoricalCrossentropy.v3")
        fns = {"ours": lambda: ours(p, y), "thinc v3": lambda: thinc(p, y32)}
        return with_copy_floor(fns, p)

    return setup


def sparse_str(n, c):
    def setup():
        _, p, y = _inputs(n, c)
        names = [f"LABEL_{i}" for i in range(c)]
        labels = [names[i] for i in y]
        ours = _resolve("SparseCategoricalCrossentropy.v4", names=names)
        thinc = _resolve("CategoricalCrossentropy.v3", names=names)
        fns = {"ours": lambda: ours(p, labels), "thinc v3": lambda: thinc(p, labels)}
        return with_copy_floor(fns, p)

    return setup


def sparse_logits(n, c):
    def setup():
        z, _, y = _inputs(n, c)
        ours = _resolve("SparseCategoricalCrossentropy.v4", from_logits=True)
        return {"ours": lambda: ours(z, y), "torch cross_entropy fwd+bwd": _torch_cross_entropy(z, y)}

    return setup


def dense(n, c):
    def setup():
        _, p, y = _inputs(n, c)
        t = numpy.eye(c, dtype="float32")[y]
        ours = _resolve("CategoricalCrossentropy.v4")
        thinc = _resolve("CategoricalCrossentropy.v3")
        zt = torch.tensor(numpy.log(p), requires_grad=True)
        tt = torch.tensor(t)

        def torch_run():
            zt.grad = None
            loss = F.cross_entropy(zt, tt)
            loss.backward()
            return zt.grad, loss.item()

        return {"ours": lambda: ours(p, t), "thinc v3": lambda: thinc(p, t), "torch cross_entropy fwd+bwd": torch_run}

    return setup


def sequence(n_seqs, length, c):
    def setup():
        _, p, y = _inputs(n_seqs * length, c)
        names = [f"TAG_{i}" for i in range(c)]
        guesses = [p[i * length : (i + 1) * length] for i in range(n_seqs)]
        truths = [[names[j] for j in y[i * length : (i + 1) * length]] for i in range(n_seqs)]
        ours = _resolve("SequenceCategoricalCrossentropy.v4", names=names)
        thinc = _resolve("SequenceCategoricalCrossentropy.v3", names=names)
        return {"ours": lambda: ours(guesses, truths), "thinc v3": lambda: thinc(guesses, truths)}

    return setup


def focal(n, c):
    def setup():
        z, _, y = _inputs(n, c)
        ours = _resolve("CategoricalFocalCrossentropy.v1", from_logits=True, gamma=2.0)
        zt = torch.tensor(z, requires_grad=True)
        yt = torch.tensor(y)

        def torch_run():
            zt.grad = None
            logp = F.log_softmax(zt, dim=1).gather(1, yt[:, None])[:, 0]
            loss = -((1 - logp.exp()) ** 2 * logp).mean()
            loss.backward()
            return zt.grad, loss.item()

        return {"ours": lambda: ours(z, y), "torch autograd fwd+bwd": torch_run}

    return setup


def kl(n, c):
    def setup():
        z, t, _ = _inputs(n, c)
        ours = _resolve("KLDivergence.v1", from_logits=True)
        zt = torch.tensor(z, requires_grad=True)
        tt = torch.tensor(t)

        def torch_run():
            zt.grad = None
            loss = F.kl_div(F.log_softmax(zt, dim=1), tt, reduction="batchmean")
            loss.backward()
            return zt.grad, loss.item()

        return {"ours": lambda: ours(z, t), "torch kl_div fwd+bwd": torch_run}

    return setup


def _grad_bytes(n, c):
    return lambda: n * c * 4


ENTRIES = []
for n, c, what in SIZES:
    size = f"{n}x{c}"
    ten_x = {"thinc v3": 0.1} if (n, c) == (4096, 50) else {}
    floor = {"numpy copy of guesses": 2.0} if n * c >= FLOOR_ELEMENTS else {}
    ENTRIES += [
        Entry("SparseCategoricalCrossentropy.v4", f"{size} int labels", sparse_int(n, c), targets={**ten_x, **floor},
              memory=True, memory_target=1.1, grad_bytes=_grad_bytes(n, c)),
        Entry("SparseCategoricalCrossentropy.v4", f"{size} str labels", sparse_str(n, c), targets={**ten_x, **floor}),
        Entry("SparseCategoricalCrossentropy.v4", f"{size} from_logits", sparse_logits(n, c),
              targets={"torch cross_entropy fwd+bwd": 1.0}, memory=True, memory_target=1.1, grad_bytes=_grad_bytes(n, c)),
    ]
ENTRIES += [
    Entry("CategoricalCrossentropy.v4", "4096x50 one-hot", dense(4096, 50)),
    Entry("SequenceCategoricalCrossentropy.v4", "64 sequences x 64 tokens x 50, str labels", sequence(64, 64, 50)),
    Entry("CategoricalFocalCrossentropy.v1", "4096x50 from_logits", focal(4096, 50)),
    Entry("KLDivergence.v1", "4096x50 from_logits", kl(4096, 50)),
]
