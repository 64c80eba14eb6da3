"""Battery cases of the losses for imbalanced and noisy labels.

Each reference is a slow float64 re-derivation from the documented formula,
one group (row or column) or one row at a time with Python's ``math``,
independent of the package's code. ``average="macro"`` cases report each
row's share of the class losses, ``normalize`` divides by the number of
columns C (stated through ``normalize_divisor``: C / N on top of N), and
their sample weights act inside the class sums (not a per-example scaling,
so the battery's linearity check does not apply).
"""
import math

import numpy
from thinc.types import Ragged

from battery import Case
from cases.binary import logits_and_labels, probs_and_labels, probs_and_soft, vector, with_missing

C = 5
NAMES = ["ADJ", "NOUN", "VERB", "X"]
EPS = 1e-7  # the documented probability clip of the sigmoid family


# Inputs -----------------------------------------------------------------------


def softmax_probs(rng, n, c=len(NAMES)):
    z = rng.normal(scale=2.0, size=(n, c))
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_logits(rng, n, c=len(NAMES)):
    return rng.normal(scale=3.0, size=(n, c))


def int_labels(rng, n):
    return rng.integers(0, len(NAMES), size=n)


def names_with_missing(rng, n):
    labels = [NAMES[i] for i in int_labels(rng, n)]
    for i in range(0, n, 3):
        labels[i] = "-"
    return labels


def negative_names(rng, n):
    return [("!" if i % 2 else "") + NAMES[j] for i, j in enumerate(int_labels(rng, n))]


# References: sigmoid outputs ---------------------------------------------------------


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _entries(guesses, truths, settings):
    """Rows of (p, t, kept) triples, as Python floats."""
    g = numpy.asarray(guesses, dtype="float64")
    t = numpy.asarray(truths, dtype="float64")
    if g.ndim == 1:
        g, t = g[:, None], t[:, None]
    missing = settings.get("missing_value")
    rows = []
    for g_row, t_row in zip(g.tolist(), t.tolist()):
        row = []
        for x, y in zip(g_row, t_row):
            p = _sigmoid(x) if settings.get("from_logits") else x
            row.append((p, 0.0 if y == missing else y, y != missing))
        rows.append(row)
    return rows, g.shape[1]


def _dice_terms(p, t, settings):
    """(soft errors, denominator term) of one entry of the Dice loss."""
    a = settings.get("self_adjusting", 0.0)
    q = (1.0 - p) ** a * p
    if settings.get("squared_denominator"):
        return (q - t) ** 2, q * q + t * t
    return q + t - 2 * q * t, q + t


def _tversky_terms(p, t, settings):
    alpha, beta = settings.get("alpha", 0.3), settings.get("beta", 0.7)
    errors = alpha * p * (1 - t) + beta * (1 - p) * t
    return errors, p * t + errors


def _overlap_reference(terms):
    def reference(guesses, truths, settings):
        rows, c = _entries(guesses, truths, settings)
        s = settings.get("smooth", 1.0)
        if settings.get("average", "samples") == "samples":
            out = []
            for row in rows:
                pairs = [terms(p, t, settings) for p, t, kept in row if kept]
                out.append(sum(e for e, _ in pairs) / (sum(d for _, d in pairs) + s))
            return out
        denominators = [
            sum(terms(row[j][0], row[j][1], settings)[1] for row in rows if row[j][2]) + s for j in range(c)
        ]
        return [
            sum(terms(p, t, settings)[0] / denominators[j] for j, (p, t, kept) in enumerate(row) if kept)
            for row in rows
        ]

    return reference


ref_dice = _overlap_reference(_dice_terms)
ref_tversky = _overlap_reference(_tversky_terms)


def ref_asymmetric(guesses, truths, settings):
    rows, _ = _entries(guesses, truths, settings)
    gp, gn, m = settings.get("gamma_pos", 0.0), settings.get("gamma_neg", 4.0), settings.get("clip", 0.05)
    out = []
    for row in rows:
        total = 0.0
        for p, t, kept in row:
            if not kept:
                continue
            if not settings.get("from_logits"):
                p = min(max(p, EPS), 1 - EPS)
            p_m = max(p - m, 0.0)
            total += -t * (1 - p) ** gp * math.log(p) - (1 - t) * p_m**gn * math.log(1 - p_m)
        out.append(total)
    return out


# References: softmax outputs -------------------------------------------------------------


def _log_probs(row, from_logits):
    if from_logits:
        top = max(row)
        lse = top + math.log(sum(math.exp(v - top) for v in row))
        return [v - lse for v in row]
    return [math.log(v) if v > 0 else -math.inf for v in row]


def _class_weights(settings, c):
    w = settings.get("class_weights")
    if w is None:
        return [1.0] * c
    if isinstance(w, dict):
        return [w.get(name, 1.0) for name in NAMES]
    return list(w)


def _lq(p, q):
    return (1.0 - p**q) / q


def ref_gce(guesses, truths, settings):
    q = settings.get("q", 0.7)
    c = guesses.shape[1]
    w = _class_weights(settings, c)
    out = []
    for i, row in enumerate(guesses.tolist()):
        p = [math.exp(v) for v in _log_probs(row, settings.get("from_logits"))]
        if getattr(truths, "ndim", 1) == 2:
            t = truths[i].tolist()
            out.append(sum(w[j] * t[j] * _lq(p[j], q) for j in range(c)))
            continue
        label = truths[i]
        if label is None or label == settings.get("missing_value", object()):
            out.append(0.0)
            continue
        negative = isinstance(label, str) and label.startswith("!")
        if isinstance(label, str):
            label = NAMES.index(label.lstrip("!"))
        label = int(label)
        out.append(w[label] * _lq(1.0 - p[label] if negative else p[label], q))
    return out


def ref_gce_masked_argmax(guesses, truths, settings):
    """Dense rows whose argmax equals the int missing_value are masked."""
    losses = ref_gce(guesses, truths, settings)
    return [0.0 if int(numpy.argmax(t)) == settings["missing_value"] else v for v, t in zip(losses, truths)]


def ragged(rng, n):
    lengths = rng.integers(1, 4, size=n).astype("int32")
    return Ragged(softmax_probs(rng, int(lengths.sum())), lengths), int_labels(rng, int(lengths.sum()))


# Cases ----------------------------------------------------------------------------


def macro_divisor(truths):
    """normalize divides a macro loss by the number of columns C (the battery divides by N first)."""
    t = numpy.asarray(truths)
    n, c = t.shape[0], (1 if t.ndim == 1 else t.shape[1])
    return numpy.full((n,), c / n)


DICE, TVERSKY, ASL, GCE = "Dice.v1", "Tversky.v1", "AsymmetricLoss.v1", "GeneralizedCrossentropy.v1"
NEG_WHY = "negative labels mask all but one column: the categorical family's convention, not a derivative"


def macro(name, make, settings, id, **kwargs):
    """A case with average = "macro" (see the module docstring)."""
    return Case(
        name,
        make,
        {"average": "macro", **settings},
        id=id,
        weightable=False,
        normalize_divisor=macro_divisor,
        **kwargs,
    )


CASES = [
    # Dice
    Case(DICE, probs_and_labels, reference=ref_dice),
    Case(
        DICE,
        logits_and_labels,
        {"from_logits": True, "self_adjusting": 1.0, "squared_denominator": True, "smooth": 0.5},
        id="logits-self-adjusting-squared",
        reference=ref_dice,
    ),
    Case(DICE, vector(probs_and_labels), {"self_adjusting": 1.0}, id="per-example-dsc", reference=ref_dice),
    Case(DICE, with_missing(probs_and_soft), {"missing_value": -1.0, "self_adjusting": 0.5}, id="soft-missing-alpha-0.5", reference=ref_dice),
    macro(DICE, probs_and_soft, {"smooth": 0.1}, "macro-soft", reference=ref_dice),
    macro(
        DICE,
        with_missing(logits_and_labels),
        {"from_logits": True, "missing_value": -1.0, "self_adjusting": 2.0},
        "macro-logits-missing-self-adjusting",
        reference=ref_dice,
    ),
    macro(DICE, probs_and_labels, {"squared_denominator": True}, "macro-squared", reference=ref_dice),
    # Tversky
    Case(TVERSKY, probs_and_labels, reference=ref_tversky),
    Case(TVERSKY, logits_and_labels, {"from_logits": True, "alpha": 0.5, "beta": 0.5, "smooth": 0.2}, id="logits-dice", reference=ref_tversky),
    macro(TVERSKY, with_missing(probs_and_soft), {"missing_value": -1.0, "alpha": 0.2, "beta": 1.5}, "macro-soft-missing", reference=ref_tversky),
    macro(TVERSKY, vector(logits_and_labels), {"from_logits": True, "alpha": 1.0, "beta": 1.0}, "macro-vector-jaccard", reference=ref_tversky),
    # AsymmetricLoss
    Case(ASL, probs_and_labels, reference=ref_asymmetric),
    Case(
        ASL,
        logits_and_labels,
        {"from_logits": True, "gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.0},
        id="logits-no-clip",
        reference=ref_asymmetric,
    ),
    Case(
        ASL,
        with_missing(lambda r, n: (r.normal(0.0, 3.0, size=(n, C)), r.uniform(0.0, 1.0, size=(n, C)))),
        {"from_logits": True, "gamma_pos": 0.5, "gamma_neg": 3.0, "clip": 0.1, "missing_value": -1.0},
        id="logits-soft-missing-clip",
        reference=ref_asymmetric,
    ),
    Case(ASL, vector(probs_and_labels), {"gamma_neg": 0.5, "clip": 0.2}, id="vector-gamma-0.5", reference=ref_asymmetric),
    # GeneralizedCrossentropy
    Case(GCE, lambda r, n: (softmax_probs(r, n), int_labels(r, n)), gradient="logits", reference=ref_gce),
    Case(
        GCE,
        lambda r, n: (softmax_probs(r, n), names_with_missing(r, n)),
        {"names": NAMES, "missing_value": "-", "class_weights": {"NOUN": 3.0, "X": 0.5}},
        id="names-missing-dict-weights",
        gradient="logits",
        reference=ref_gce,
    ),
    Case(
        GCE,
        lambda r, n: (softmax_logits(r, n), int_labels(r, n).tolist()),
        {"from_logits": True, "q": 0.3, "class_weights": [1.0, 2.0, 0.5, 3.0]},
        id="logits-q-0.3-weights",
        reference=ref_gce,
    ),
    Case(
        GCE,
        lambda r, n: (softmax_probs(r, n), negative_names(r, n)),
        {"names": NAMES, "neg_prefix": "!", "q": 0.5},
        id="negative-labels",
        gradient="none",
        why=NEG_WHY,
        reference=ref_gce,
    ),
    Case(
        GCE,
        lambda r, n: (softmax_logits(r, n), softmax_probs(r, n)),
        {"from_logits": True, "q": 1.0},
        id="logits-dense-mae",
        reference=ref_gce,
    ),
    Case(
        GCE,
        lambda r, n: (softmax_probs(r, n), numpy.eye(len(NAMES))[int_labels(r, n)]),
        {"missing_value": 0, "q": 0.9},
        id="one-hot-missing-argmax",
        gradient="logits",
        reference=ref_gce_masked_argmax,
    ),
    Case(GCE, ragged, id="ragged", gradient="logits", permutable=False, weightable=False),
]
