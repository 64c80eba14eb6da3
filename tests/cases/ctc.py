"""Battery cases of CTC, with two slow float64 references.

* :func:`brute_force_ctc`: enumerates every path of length T (C^T of them),
  collapses it (merge repeats, drop blanks) and sums the probabilities of the
  paths that give the labels. Only for tiny T and C; obviously correct.
* :func:`textbook_ctc`: Graves et al.'s alpha recursion in probability space,
  one sequence, one state and one step at a time in plain Python floats.

Examples are the sequences (list items), so the cases are permutable;
``sample_weight`` holds one weight per sequence. ``normalize`` divides each
loss by its label length and then by N (PyTorch's "mean"), which the battery
checks through ``normalize_divisor``.
"""
import itertools
import math

import numpy

from battery import Case

NAME = "CTC.v1"
NAMES = ["a", "b", "-", "c"]  # blank = 2 in the string case


def _softmax(z):
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def feasible_labels(rng, t, n_classes, blank, max_len=None):
    """Random labels (no blank) that fit in t steps, repeats included often."""
    others = [c for c in range(n_classes) if c != blank]
    top = t if max_len is None else min(t, max_len)
    while True:
        labels = [int(x) for x in rng.choice(others, size=int(rng.integers(0, top + 1)))]
        if len(labels) + sum(a == b for a, b in zip(labels, labels[1:])) <= t:
            return labels


def sequences(
    *, n_classes=4, blank=0, max_t=5, min_t=1, logits=False, strings=False, arrays=False, impossible=False, max_len=None
):
    def make(rng, n):
        guesses, truths = [], []
        for i in range(n):
            t = int(rng.integers(min_t, max_t + 1))
            z = rng.normal(scale=1.5, size=(t, n_classes))
            guesses.append(z if logits else _softmax(z))
            if impossible and i % 3 == 1:  # t steps cannot emit t + 1 labels
                labels = [(blank + 1 + k % (n_classes - 1)) % n_classes for k in range(t + 1)]
            else:
                labels = feasible_labels(rng, t, n_classes, blank, max_len)
            if strings:
                truths.append([NAMES[c] for c in labels])
            elif arrays:
                truths.append(numpy.asarray(labels, dtype="int64"))
            else:
                truths.append(labels)
        return guesses, truths

    return make


# References -------------------------------------------------------------------


def _log_probs(x, from_logits):
    x = numpy.asarray(x, dtype="float64")
    if from_logits:
        return [[v - (max(row) + math.log(sum(math.exp(u - max(row)) for u in row))) for v in row] for row in x]
    return [[math.log(v) for v in row] for row in x]


def _indices(labels, settings):
    names = settings.get("names")
    return [names.index(label) if isinstance(label, str) else int(label) for label in list(labels)]


def collapse(path, blank):
    out = []
    previous = None
    for c in path:
        if c != previous and c != blank:
            out.append(c)
        previous = c
    return out


def brute_force_ctc(guesses, truths, settings):
    """-log p(labels | x) by enumerating all C^T paths (tiny inputs only)."""
    blank = settings.get("blank", 0)
    losses = []
    for x, labels in zip(guesses, truths):
        log_y = _log_probs(x, settings.get("from_logits", False))
        target = _indices(labels, settings)
        n_classes = len(log_y[0]) if log_y else 0
        total = 1.0 if not log_y and not target else 0.0
        if log_y:
            for path in itertools.product(range(n_classes), repeat=len(log_y)):
                if collapse(path, blank) == target:
                    total += math.exp(sum(row[c] for row, c in zip(log_y, path)))
        losses.append(_infinite_loss(settings) if total == 0.0 else -math.log(total))
    return losses


def textbook_ctc(guesses, truths, settings):
    """-log p(labels | x) by Graves' alpha recursion in probability space (float64)."""
    blank = settings.get("blank", 0)
    losses = []
    for x, labels in zip(guesses, truths):
        y = [[math.exp(v) for v in row] for row in _log_probs(x, settings.get("from_logits", False))]
        ext = [blank]
        for c in _indices(labels, settings):
            ext += [c, blank]
        if not y:
            losses.append(0.0 if len(ext) == 1 else _infinite_loss(settings))
            continue
        alpha = [0.0] * len(ext)
        alpha[0] = y[0][ext[0]]
        if len(ext) > 1:
            alpha[1] = y[0][ext[1]]
        for row in y[1:]:
            new = []
            for s, c in enumerate(ext):
                a = alpha[s] + (alpha[s - 1] if s >= 1 else 0.0)
                if s >= 2 and c != blank and c != ext[s - 2]:
                    a += alpha[s - 2]
                new.append(a * row[c])
            alpha = new
        p = alpha[-1] + (alpha[-2] if len(ext) > 1 else 0.0)
        losses.append(_infinite_loss(settings) if p == 0.0 else -math.log(p))
    return losses


def _infinite_loss(settings):
    return 0.0 if settings.get("zero_infinity") else math.inf


def label_lengths(truths):
    """normalize's extra divisor of each sequence: its label length (at least 1)."""
    return numpy.asarray([max(len(t), 1) for t in truths], dtype="float64")


CASES = [
    Case(
        NAME,
        sequences(),
        gradient="logits",
        reference=brute_force_ctc,
        dtypes=("float16", "float32", "float64"),
        normalize_divisor=label_lengths,
    ),
    Case(
        NAME,
        sequences(logits=True, strings=True, blank=2),
        {"from_logits": True, "blank": 2, "names": NAMES},
        id="logits-names-blank2",
        reference=brute_force_ctc,
        normalize_divisor=label_lengths,
    ),
    Case(
        NAME,
        sequences(arrays=True, impossible=True, blank=3),
        {"zero_infinity": True, "blank": 3},
        id="zero-infinity",
        gradient="logits",
        reference=brute_force_ctc,
        normalize_divisor=label_lengths,
    ),
    Case(
        NAME,
        sequences(n_classes=6, max_t=14, min_t=0, logits=True, max_len=6),
        {"from_logits": True, "normalize": False},
        id="longer-sum",
        n=9,
        reference=textbook_ctc,
        normalize_divisor=label_lengths,
    ),
]
