"""Battery cases of the softmax family, with slow float64 references."""
import math

import numpy
from thinc.types import Ragged

from battery import Case

NAMES = ["ADJ", "NOUN", "VERB", "X"]
C = len(NAMES)


def probs(rng, n, c=C):
    z = rng.normal(scale=2.0, size=(n, c))
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def logits(rng, n, c=C):
    return rng.normal(scale=3.0, size=(n, c))


def int_labels(rng, n):
    return rng.integers(0, C, size=n)


def str_labels_with_missing(rng, n):
    labels = [NAMES[i] for i in rng.integers(0, C, size=n)]
    for i in range(0, n, 3):
        labels[i] = "-"
    return labels


def onehot(rng, n):
    return numpy.eye(C)[rng.integers(0, C, size=n)]


def soft(rng, n):
    return probs(rng, n)


# Slow references: one row at a time, float64, straight from the formulas.


def _log_p(row, from_logits, from_log_probs=False):
    if from_log_probs:
        return list(row)
    if from_logits:
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        return [v - lse for v in row]
    return [math.log(v + 1e-9) for v in row]


def _target(label, c, smoothing):
    off = smoothing / (c - 1) if smoothing else 0.0
    return [1.0 - smoothing if j == label else off for j in range(c)]


def _weights(settings, c):
    w = settings.get("class_weights")
    if w is None:
        return [1.0] * c
    if isinstance(w, dict):
        return [w.get(name, 1.0) for name in NAMES]
    return list(w)


def ref_sparse(guesses, truths, settings):
    out = []
    c = guesses.shape[1]
    w = _weights(settings, c)
    for row, label in zip(guesses.tolist(), truths):
        if label == settings.get("missing_value", object()) or label is None:
            out.append(0.0)
            continue
        label = NAMES.index(label) if isinstance(label, str) else int(label)
        t = _target(label, c, settings.get("label_smoothing", 0.0))
        lp = _log_p(row, settings.get("from_logits", False), settings.get("from_log_probs", False))
        out.append(-sum(wc * tc * l for wc, tc, l in zip(w, t, lp)))
    return out


def ref_dense(guesses, truths, settings):
    out = []
    c = guesses.shape[1]
    w = _weights(settings, c)
    e = settings.get("label_smoothing", 0.0)
    for row, t in zip(guesses.tolist(), truths.tolist()):
        if "missing_value" in settings and int(numpy.argmax(t)) == settings["missing_value"]:
            out.append(0.0)
            continue
        if e:
            t = _target(int(numpy.argmax(t)), c, e)
        lp = _log_p(row, settings.get("from_logits", False), settings.get("from_log_probs", False))
        out.append(-sum(wc * tc * l for wc, tc, l in zip(w, t, lp)))
    return out


def log_probs(rng, n, c=C):
    return numpy.log(probs(rng, n, c))


def ref_focal(guesses, truths, settings):
    out = []
    c = guesses.shape[1]
    w = _weights(settings, c)
    gamma, alpha = settings.get("gamma", 2.0), settings.get("alpha", 1.0)
    for i, row in enumerate(guesses.tolist()):
        t = truths[i].tolist() if getattr(truths, "ndim", 1) == 2 else _target(int(truths[i]), c, 0.0)
        lp = _log_p(row, settings.get("from_logits", False))
        p = [math.exp(v) for v in lp] if settings.get("from_logits") else row
        out.append(-alpha * sum(wc * tc * (1 - pc) ** gamma * l for wc, tc, pc, l in zip(w, t, p, lp)))
    return out


def ref_kl(guesses, truths, settings):
    out = []
    temp = settings.get("temperature", 1.0)
    for row, t in zip(guesses.tolist(), truths.tolist()):
        z = row if settings.get("from_logits") else [math.log(v + 1e-9) for v in row]
        lq = _log_p([v / temp for v in z], True) if (settings.get("from_logits") or temp != 1.0) else z
        out.append(temp**2 * sum(tc * (math.log(tc) if tc > 0 else 0.0) - tc * l for tc, l in zip(t, lq)))
    return out


def ragged(rng, n):
    lengths = rng.integers(1, 4, size=n).astype("int32")
    return Ragged(probs(rng, int(lengths.sum())), lengths), int_labels(rng, int(lengths.sum()))


def sequences(make_truths):
    def make(rng, n):
        lengths = rng.integers(1, 5, size=n)
        return [probs(rng, int(t)) for t in lengths], [make_truths(rng, int(t)) for t in lengths]

    return make


SPARSE = "SparseCategoricalCrossentropy.v4"
DENSE = "CategoricalCrossentropy.v4"
SEQ = "SequenceCategoricalCrossentropy.v4"
FOCAL = "CategoricalFocalCrossentropy.v1"
KL = "KLDivergence.v1"
NEG_WHY = "negative labels mask all but one column: Thinc's convention, not a derivative"
RAGGED_WHY = "examples are sequences of a Ragged; sample weights are per row"

CASES = [
    Case(SPARSE, lambda r, n: (probs(r, n), int_labels(r, n)), gradient="logits", reference=ref_sparse),
    Case(
        SPARSE,
        lambda r, n: (probs(r, n), str_labels_with_missing(r, n)),
        {"names": NAMES, "missing_value": "-", "label_smoothing": 0.1},
        id="names-missing-smoothing",
        gradient="logits",
        reference=ref_sparse,
    ),
    Case(
        SPARSE,
        lambda r, n: (logits(r, n), int_labels(r, n).tolist()),
        {"from_logits": True, "class_weights": [1.0, 2.0, 0.5, 3.0]},
        id="logits-class-weights",
        reference=ref_sparse,
    ),
    Case(
        SPARSE,
        lambda r, n: (probs(r, n), [NAMES[i] for i in int_labels(r, n)]),
        {"names": NAMES, "class_weights": {"NOUN": 3.0, "X": 0.0}, "label_smoothing": 0.2},
        id="dict-weights-smoothing",
        gradient="logits",
        reference=ref_sparse,
    ),
    Case(
        SPARSE,
        lambda r, n: (probs(r, n), [("!" if i % 2 else "") + NAMES[j] for i, j in enumerate(int_labels(r, n))]),
        {"names": NAMES, "neg_prefix": "!"},
        id="negative-labels",
        gradient="none",
        why=NEG_WHY,
    ),
    Case(SPARSE, ragged, id="ragged", gradient="logits", permutable=False, weightable=False),
    Case(
        SPARSE,
        lambda r, n: (log_probs(r, n), int_labels(r, n)),
        {"from_log_probs": True, "label_smoothing": 0.1, "class_weights": [1.0, 2.0, 0.5, 1.5]},
        id="log-probs",
        reference=ref_sparse,
    ),
    Case(DENSE, lambda r, n: (log_probs(r, n), soft(r, n)), {"from_log_probs": True}, id="log-probs", reference=ref_dense),
    Case(DENSE, lambda r, n: (probs(r, n), soft(r, n)), gradient="logits", reference=ref_dense),
    Case(
        DENSE,
        lambda r, n: (probs(r, n), onehot(r, n)),
        {"label_smoothing": 0.3, "missing_value": 0},
        id="smoothing-missing",
        gradient="logits",
        reference=ref_dense,
    ),
    Case(
        DENSE,
        lambda r, n: (logits(r, n), soft(r, n)),
        {"from_logits": True, "class_weights": [0.5, 1.0, 2.0, 1.5]},
        id="logits-class-weights",
        reference=ref_dense,
    ),
    # normalize=False: v4 divides the gradient by n but reports the unnormalised
    # loss, so only then is the gradient the derivative of the reported loss.
    Case(SEQ, sequences(lambda r, t: int_labels(r, t)), {"normalize": False}, gradient="logits", loss_normalized=False, weightable=False),
    Case(
        SEQ,
        sequences(lambda r, t: [NAMES[i] for i in int_labels(r, t)]),
        {"normalize": False, "names": NAMES, "label_smoothing": 0.1},
        id="names-smoothing",
        gradient="logits",
        loss_normalized=False,
        weightable=False,
    ),
    Case(SEQ, sequences(soft), {"normalize": False, "sparse": False}, id="dense", gradient="logits", loss_normalized=False, weightable=False),
    Case(FOCAL, lambda r, n: (probs(r, n), int_labels(r, n)), gradient="logits", reference=ref_focal, fd_rtol=1e-3),
    Case(
        FOCAL,
        lambda r, n: (logits(r, n), soft(r, n)),
        {"from_logits": True, "gamma": 1.5, "alpha": 0.25, "class_weights": [1.0, 2.0, 3.0, 4.0]},
        id="logits-dense-weights",
        reference=ref_focal,
    ),
    Case(FOCAL, lambda r, n: (probs(r, n), int_labels(r, n)), {"gamma": 0.5}, id="gamma-0.5", gradient="logits", reference=ref_focal, fd_rtol=1e-3),
    Case(KL, lambda r, n: (probs(r, n), soft(r, n)), gradient="logits", reference=ref_kl),
    Case(
        KL,
        lambda r, n: (logits(r, n), soft(r, n)),
        {"from_logits": True, "temperature": 2.0},
        id="logits-temperature",
        reference=ref_kl,
    ),
]
