"""Battery cases of the binary and multi-label (sigmoid) family and the margin losses.

Each reference is a slow float64 re-derivation from the definition (numpy
``logaddexp`` for log-sigmoids, explicit loops for the multi-class margin),
independent of the package's code.
"""
import numpy

from battery import Case

C = 5  # columns of the multi-label cases
EPS = 1e-7  # the documented probability clip (thinc_losses_plus.functional.sigmoid.PROB_EPS)


# Inputs ---------------------------------------------------------------------


def probs_and_labels(rng, n, c=C):
    return rng.uniform(0.05, 0.95, size=(n, c)), rng.integers(0, 2, size=(n, c)).astype("float64")


def probs_and_soft(rng, n, c=C):
    return rng.uniform(0.05, 0.95, size=(n, c)), rng.uniform(0.0, 1.0, size=(n, c))


def logits_and_labels(rng, n, c=C):
    return rng.normal(0.0, 3.0, size=(n, c)), rng.integers(0, 2, size=(n, c)).astype("float64")


def with_missing(make):
    def made(rng, n):
        guesses, truths = make(rng, n)
        truths = truths.copy()
        truths[rng.uniform(size=truths.shape) < 0.25] = -1.0
        return guesses, truths

    return made


def vector(make):
    """One decision per example: guesses and truths of shape (N,)."""

    def made(rng, n):
        guesses, truths = make(rng, n, 1)
        return guesses[:, 0], truths[:, 0]

    return made


def scores_and_signs(rng, n, c=C):
    scores = rng.normal(0.0, 1.5, size=(n, c))
    return scores, rng.choice([-1.0, 1.0], size=(n, c))


def scores_and_classes(rng, n, c=C):
    return rng.normal(0.0, 1.0, size=(n, c)), rng.integers(0, c, size=n)


def scores_and_names(rng, n):
    names = ["A", "B", "C", "D", "E"]
    labels = [names[i] for i in rng.integers(0, C, size=n)]
    for i in range(0, n, 3):
        labels[i] = "?"  # the missing value
    return rng.normal(0.0, 1.0, size=(n, C)), labels


def sentiment_labels(rng, n):
    names = ["NEG", "NEU", "POS"]
    return rng.normal(0.0, 1.0, size=(n, 3)), [names[i] for i in rng.integers(0, 3, size=n)]


def scores_and_class_list(rng, n):
    scores, labels = scores_and_classes(rng, n)
    return scores, [int(y) for y in labels]


# References (per example, float64) -------------------------------------------


def _columns(value, c):
    if value is None:
        return numpy.ones((1, c))
    return numpy.broadcast_to(numpy.asarray(value, dtype="float64"), (c,)).reshape(1, c)


def _two_d(guesses, truths):
    g = numpy.asarray(guesses, dtype="float64")
    t = numpy.asarray(truths, dtype="float64")
    return (g[:, None], t[:, None]) if g.ndim == 1 else (g, t)


def bce_reference(guesses, truths, settings):
    x, t = _two_d(guesses, truths)
    keep = numpy.ones_like(t)
    if settings.get("missing_value") is not None:
        keep = (t != settings["missing_value"]).astype("float64")
        t = numpy.where(keep > 0, t, 0.0)
    e = settings.get("label_smoothing", 0.0)
    t = t * (1 - e) + 0.5 * e
    pw = _columns(settings.get("pos_weight"), x.shape[1])
    w = _columns(settings.get("class_weights"), x.shape[1])
    if settings.get("from_logits"):
        neg_log_p, neg_log_q = numpy.logaddexp(0, -x), numpy.logaddexp(0, x)
    else:
        p = numpy.clip(x, EPS, 1 - EPS)
        neg_log_p, neg_log_q = -numpy.log(p), -numpy.log(1 - p)
    return (w * keep * (pw * t * neg_log_p + (1 - t) * neg_log_q)).sum(axis=1)


def focal_reference(guesses, truths, settings):
    """torchvision.ops.sigmoid_focal_loss, elementwise, summed per row."""
    x, t = _two_d(guesses, truths)
    keep = numpy.ones_like(t)
    if settings.get("missing_value") is not None:
        keep = (t != settings["missing_value"]).astype("float64")
        t = numpy.where(keep > 0, t, 0.0)
    if settings.get("from_logits"):
        p = 1 / (1 + numpy.exp(-x))
        ce = t * numpy.logaddexp(0, -x) + (1 - t) * numpy.logaddexp(0, x)
    else:
        p = numpy.clip(x, EPS, 1 - EPS)
        ce = -(t * numpy.log(p) + (1 - t) * numpy.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** settings.get("gamma", 2.0)
    alpha = settings.get("alpha")
    if alpha is not None:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return (keep * loss).sum(axis=1)


def _signs(truths, label_format="either"):
    t = numpy.asarray(truths, dtype="float64")
    if label_format == "binary" or (label_format == "either" and (t == 0).any()):
        return 2 * t - 1
    return t


def hinge_reference(guesses, truths, settings):
    x, t = _two_d(guesses, truths)
    return numpy.maximum(0.0, settings.get("margin", 1.0) - _signs(t) * x).sum(axis=1)


def squared_hinge_reference(guesses, truths, settings):
    x, t = _two_d(guesses, truths)
    return (numpy.maximum(0.0, settings.get("margin", 1.0) - _signs(t) * x) ** 2).sum(axis=1)


def logistic_reference(guesses, truths, settings):
    x, t = _two_d(guesses, truths)
    y = _signs(t, settings.get("label_format", "signed"))
    return numpy.logaddexp(0.0, -y * x).sum(axis=1)


def multi_margin_reference(guesses, truths, settings):
    names = settings.get("names")
    margin, p = settings.get("margin", 1.0), settings.get("p", 1)
    weights = settings.get("class_weights")
    out = []
    for row, label in zip(guesses, truths):
        if label == settings.get("missing_value"):
            out.append(0.0)
            continue
        y = names.index(label) if isinstance(label, str) else int(label)
        w = 1.0 if weights is None else weights[y]
        total = sum(
            w * max(0.0, margin - row[y] + row[i]) ** p for i in range(len(row)) if i != y
        )
        out.append(total / len(row))
    return numpy.asarray(out)


# Cases -----------------------------------------------------------------------

BCE = "BinaryCrossentropy.v1"
FOCAL = "BinaryFocalCrossentropy.v1"

CASES = [
    Case(BCE, probs_and_labels, reference=bce_reference, dtypes=("float16", "float32", "float64")),
    Case(BCE, logits_and_labels, {"from_logits": True}, id="logits", reference=bce_reference),
    Case(BCE, vector(probs_and_labels), id="vector", reference=bce_reference),
    Case(
        BCE,
        probs_and_soft,
        {"pos_weight": [0.5, 1.0, 2.0, 3.0, 1.5], "class_weights": [1.0, 0.2, 2.0, 0.0, 1.0]},
        id="soft_weighted",
        reference=bce_reference,
    ),
    Case(
        BCE,
        with_missing(probs_and_labels),
        {"missing_value": -1, "label_smoothing": 0.1, "pos_weight": 2.0},
        id="missing_smoothed",
        reference=bce_reference,
    ),
    Case(
        BCE,
        with_missing(logits_and_labels),
        {"from_logits": True, "missing_value": -1, "label_smoothing": 0.2, "pos_weight": [1.0, 2.0, 3.0, 0.5, 1.0],
         "class_weights": [2.0, 1.0, 1.0, 0.5, 3.0]},
        id="logits_all_settings",
        reference=bce_reference,
    ),
    Case(FOCAL, probs_and_labels, reference=focal_reference, dtypes=("float16", "float32", "float64")),
    Case(FOCAL, logits_and_labels, {"from_logits": True, "alpha": 0.25}, id="logits_alpha", reference=focal_reference),
    Case(
        FOCAL,
        with_missing(probs_and_soft),
        {"gamma": 0.5, "alpha": 0.75, "missing_value": -1},
        id="soft_gamma_half_missing",
        reference=focal_reference,
    ),
    Case(
        FOCAL,
        with_missing(logits_and_labels),
        {"from_logits": True, "gamma": 3.0, "missing_value": -1},
        id="logits_gamma3_missing",
        reference=focal_reference,
    ),
    Case(FOCAL, vector(logits_and_labels), {"from_logits": True, "gamma": 0.0}, id="vector_gamma0", reference=focal_reference),
    Case("Hinge.v1", logits_and_labels, reference=hinge_reference, id="binary_labels"),
    Case("Hinge.v1", scores_and_signs, {"margin": 0.5}, id="signed_margin", reference=hinge_reference),
    Case("Hinge.v1", vector(scores_and_signs), id="vector", reference=hinge_reference),
    Case("SquaredHinge.v1", scores_and_signs, reference=squared_hinge_reference, dtypes=("float16", "float32", "float64")),
    Case("SquaredHinge.v1", logits_and_labels, {"margin": 2.0}, id="binary_margin", reference=squared_hinge_reference),
    Case("Logistic.v1", scores_and_signs, reference=logistic_reference),
    Case("Logistic.v1", logits_and_labels, {"label_format": "binary"}, id="binary", reference=logistic_reference),
    Case("Logistic.v1", vector(scores_and_signs), id="vector", reference=logistic_reference),
    Case("MultiMargin.v1", scores_and_classes, reference=multi_margin_reference),
    Case(
        "MultiMargin.v1",
        scores_and_classes,
        {"p": 2, "margin": 0.5, "class_weights": [1.0, 2.0, 0.5, 0.0, 3.0]},
        id="p2_weighted",
        reference=multi_margin_reference,
    ),
    Case(
        "MultiMargin.v1",
        scores_and_names,
        {"names": ["A", "B", "C", "D", "E"], "missing_value": "?", "class_weights": {"B": 2.0, "E": 0.5}},
        id="names_missing",
        reference=lambda g, t, s: multi_margin_reference(
            g, t, {**s, "class_weights": [1.0, 2.0, 1.0, 1.0, 0.5]}
        ),
    ),
    Case("MultiMargin.v1", scores_and_class_list, {"margin": 2.0}, id="int_list", reference=multi_margin_reference),
    Case(
        "MultiMargin.v1",
        sentiment_labels,
        {"names": ["NEG", "NEU", "POS"], "class_weights": {"NEU": 0.5}},
        id="sentiment_names",
        reference=lambda g, t, s: multi_margin_reference(g, t, {**s, "class_weights": [1.0, 0.5, 1.0]}),
    ),
]
