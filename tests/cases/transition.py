"""Battery cases of the partial-label cross-entropy (spaCy's transition loss), with a slow float64 reference."""
import math

import numpy

from battery import Case

NAMES = ["B-PER", "I-PER", "B-LOC", "I-LOC", "O"]
LABELS = ["PER", "PER", "LOC", "LOC", "O"]
C = len(NAMES)
NAME = "PartialLabelCrossentropy.v1"


def logits(rng, n, c=C):
    return rng.normal(scale=2.0, size=(n, c))


def codes(rng, n, *, invalid: bool):
    """1 (acceptable), 0 (wrong), -1 (invalid) per column; most rows have one
    acceptable column, some several (of one label or of several), one none."""
    out = numpy.zeros((n, C), dtype="int8")
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out[i, rng.integers(0, C)] = 1
        elif kind == 1:
            out[i, [0, 1]] = 1  # one label (PER)
        elif kind == 2:
            out[i, rng.choice(C, size=3, replace=False)] = 1  # several labels
        # kind 3: every action wrong (spaCy: no gradient)
        if invalid:
            wrong = numpy.flatnonzero(out[i] == 0)
            if wrong.size:
                out[i, wrong[0]] = -1
    return out


def ref_partial(guesses, truths, settings):
    """Row by row: spaCy's sums (1e-10 + ...), -log P_A, focal factor, row weight."""
    gamma = settings.get("gamma", 0.0)
    weights = settings.get("class_weights")
    labels = settings.get("column_labels") or settings.get("names") or list(range(C))
    missing = settings.get("missing_label", "-")
    out = []
    for row, code in zip(guesses.tolist(), truths.tolist()):
        valid = [j for j in range(len(row)) if code[j] >= 0]
        gold = [j for j in range(len(row)) if code[j] == 1]
        if not gold:
            out.append(0.0)
            continue
        m = max(row[j] for j in valid)
        g = max(row[j] for j in gold)
        big_z = 1e-10 + sum(math.exp(row[j] - m) for j in valid)
        gold_z = 1e-10 + sum(math.exp(row[j] - g) for j in gold)
        ce = max(math.log(big_z) + m - math.log(gold_z) - g, 0.0)
        loss = (1.0 - math.exp(-ce)) ** gamma * ce
        if weights is not None:
            row_labels = {labels[j] for j in gold}
            if len(row_labels) > 1:
                w = weights.get(missing, 1.0) if isinstance(weights, dict) else 1.0
            elif isinstance(weights, dict):
                w = weights.get(labels[gold[0]], 1.0)
            else:
                w = weights[gold[0]]
            loss *= w
        out.append(loss)
    return out


CASES = [
    Case(NAME, lambda r, n: (logits(r, n), codes(r, n, invalid=False)), n=8, reference=ref_partial),
    Case(
        NAME,
        lambda r, n: (logits(r, n), codes(r, n, invalid=True)),
        {"gamma": 2.0, "class_weights": [1.0, 2.0, 0.5, 3.0, 0.25]},
        id="invalid-focal-list-weights",
        n=8,
        reference=ref_partial,
    ),
    Case(
        NAME,
        lambda r, n: (logits(r, n), codes(r, n, invalid=True)),
        {"names": NAMES, "column_labels": LABELS, "class_weights": {"PER": 2.0, "O": 0.5, "-": 3.0}, "gamma": 0.5},
        id="labels-dict-weights-missing-label",
        n=8,
        reference=ref_partial,
        fd_rtol=1e-3,
    ),
    Case(
        NAME,
        lambda r, n: (logits(r, n), codes(r, n, invalid=False) == 1),
        {"names": NAMES},
        id="bool-truths",
        n=8,
        reference=lambda g, t, s: ref_partial(g, t.astype("int8"), s),
    ),
]
