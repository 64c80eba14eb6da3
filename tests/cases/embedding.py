"""Battery cases of the embedding family (cosine, cosine embedding, triplet, MMD).

References work one row at a time with ``math`` straight from the formulas
(PyTorch's and theanets' documentation), independently of the package's code.
"""
import math

import numpy

from battery import Case

D = 5


# Inputs ---------------------------------------------------------------------


def pairs(scale=1.0):
    def make(rng, n):
        return rng.normal(scale=scale, size=(n, D)), rng.normal(scale=scale, size=(n, D))

    return make


def labelled_pairs(rng, n):
    x1 = rng.normal(size=(n, D))
    # x2 = x1 plus noise, so that cosines spread over (-1, 1) on both sides of a margin
    x2 = rng.normal(scale=0.8, size=(n, D)) + rng.uniform(-1.0, 1.0, size=(n, 1)) * x1
    return (x1, x2), rng.choice(numpy.asarray([-1, 1]), size=n)


def triplets(rng, n):
    anchor = rng.normal(size=(n, D))
    positive = anchor + rng.normal(scale=0.7, size=(n, D))
    # The negatives' spread varies by row, so that some triplets violate the margin and some do not.
    negative = anchor + rng.uniform(0.3, 2.0, size=(n, 1)) * rng.normal(size=(n, D))
    return (anchor, positive, negative), None


def samples(rng, n):
    # Two samples of the same size (the battery permutes the truths' rows with the guesses').
    return rng.normal(size=(n, 3)), rng.normal(loc=0.5, scale=1.5, size=(n, 3))


# References -----------------------------------------------------------------


def dot(a, b):
    return math.fsum(x * y for x, y in zip(a, b))


def norm(a, p=2.0):
    return math.fsum(abs(x) ** p for x in a) ** (1.0 / p)


def cosine_distance_reference(guesses, truths, settings):
    eps = settings.get("eps", 1e-8)
    out = []
    for g, t in zip(guesses.tolist(), truths.tolist()):
        if settings.get("ignore_zeros", False) and not any(t):
            out.append(0.0)
            continue
        out.append(1.0 - dot(g, t) / (max(norm(g), eps) * max(norm(t), eps)))
    return out


def cosine_embedding_reference(guesses, truths, settings):
    margin = settings.get("margin", 0.0)
    out = []
    for x1, x2, y in zip(guesses[0].tolist(), guesses[1].tolist(), list(truths)):
        cos = dot(x1, x2) / math.sqrt((dot(x1, x1) + 1e-12) * (dot(x2, x2) + 1e-12))
        out.append(1.0 - cos if y == 1 else max(0.0, cos - margin))
    return out


def triplet_reference(guesses, truths, settings):
    margin, p = settings.get("margin", 1.0), settings.get("p", 2.0)
    eps, swap, squared = settings.get("eps", 1e-6), settings.get("swap", False), settings.get("squared", False)

    def dist(x, y):
        d = norm([a - b + eps for a, b in zip(x, y)], p)
        return d * d if squared else d

    out = []
    for a, pos, neg in zip(*(g.tolist() for g in guesses)):
        d_neg = dist(a, neg)
        if swap:
            d_neg = min(d_neg, dist(pos, neg))
        out.append(max(0.0, margin + dist(a, pos) - d_neg))
    return out


def mmd_reference(guesses, truths, settings):
    """Row i's term: mean_j k(x_i, x_j) - 2 mean_a k(x_i, y_a) + mean_ab k(y_a, y_b)."""
    bandwidths = settings.get("bandwidth", 1.0)
    bandwidths = bandwidths if isinstance(bandwidths, list) else [bandwidths]

    def k(x, y):
        sq = math.fsum((a - b) ** 2 for a, b in zip(x, y))
        return math.fsum(math.exp(-sq / b) for b in bandwidths)

    xs, ys = guesses.tolist(), truths.tolist()
    yy = math.fsum(k(a, b) for a in ys for b in ys) / len(ys) ** 2
    return [
        math.fsum(k(x, z) for z in xs) / len(xs) - 2.0 * math.fsum(k(x, y) for y in ys) / len(ys) + yy for x in xs
    ]


# Cases ----------------------------------------------------------------------

CASES = [
    Case("CosineDistance.v2", pairs(), reference=cosine_distance_reference),
    # Random truths have no zero row: the battery's normalize check divides by
    # all N. Zero rows (and normalize dividing by the kept rows) are tested in
    # tests/test_embedding.py.
    Case("CosineDistance.v2", pairs(), {"ignore_zeros": True}, id="ignore-zeros", reference=cosine_distance_reference),
    # Norms around 0.2 fall below eps = 0.5: the clamped branch.
    Case("CosineDistance.v2", pairs(0.15), {"eps": 0.5}, id="eps-clamps", reference=cosine_distance_reference),
    Case("CosineEmbedding.v1", labelled_pairs, reference=cosine_embedding_reference),
    Case("CosineEmbedding.v1", labelled_pairs, {"margin": 0.3}, id="margin", reference=cosine_embedding_reference),
    Case("CosineEmbedding.v1", labelled_pairs, {"margin": -0.5}, id="negative-margin", reference=cosine_embedding_reference),
    Case("TripletMargin.v1", triplets, reference=triplet_reference),
    Case("TripletMargin.v1", triplets, {"p": 1.0, "eps": 0.0, "margin": 2.0}, id="p1", reference=triplet_reference),
    Case(
        "TripletMargin.v1", triplets, {"p": 3.0, "swap": True, "margin": 0.5, "eps": 1e-3}, id="p3-swap",
        reference=triplet_reference,
    ),
    # Gluon's TripletLoss: squared Euclidean distances, no eps.
    Case("TripletMargin.v1", triplets, {"squared": True, "eps": 0.0}, id="squared", reference=triplet_reference),
    Case(
        "TripletMargin.v1", triplets, {"squared": True, "swap": True, "p": 1.5, "margin": 3.0}, id="squared-swap-p1.5",
        reference=triplet_reference,
    ),
    Case("MaximumMeanDiscrepancy.v1", samples, reference=mmd_reference),
    Case(
        "MaximumMeanDiscrepancy.v1", samples, {"bandwidth": [0.5, 2.0, 8.0]}, id="multi-kernel",
        reference=mmd_reference,
    ),
]
