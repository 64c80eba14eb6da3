"""Battery cases of the combination loss (WeightedSum).

The battery's structures are arrays, tuples, lists and Ragged, so these cases
share one guesses array (or tuple) and one truths array among the losses;
dict guesses and truths, and Thinc's built-in sub-losses (which have no
per-example losses), are tested in tests/test_combine.py. Each example's
reference is the weighted sum of the sub-losses' float64 references, each
divided as that sub-loss normalises (by N here).
"""
from battery import Case

from cases.embedding import (
    cosine_distance_reference,
    cosine_embedding_reference,
    labelled_pairs,
    mmd_reference,
    pairs,
    samples,
)


def weighted_reference(parts):
    """``parts``: name -> (reference, sub-settings); sub-losses normalise by N unless told not to."""

    def reference(guesses, truths, settings):
        n = len(truths)
        total = [0.0] * n
        for key, (ref, sub) in parts.items():
            weight = settings.get("weights", {}).get(key, 1.0)
            divisor = n if sub.get("normalize", True) else 1
            for i, value in enumerate(ref(guesses, truths, sub)):
                total[i] += weight * value / divisor
        return total

    return reference


COS = {"@losses": "CosineDistance.v2"}
MMD = {"@losses": "MaximumMeanDiscrepancy.v1", "bandwidth": 2.0}

CASES = [
    Case(
        "WeightedSum.v1",
        samples,
        {"losses": {"cos": COS, "mmd": MMD}, "weights": {"cos": 0.7, "mmd": 2.0}},
        reference=weighted_reference({"cos": (cosine_distance_reference, {}), "mmd": (mmd_reference, {"bandwidth": 2.0})}),
    ),
    # Sub-losses that do not normalise; a missing weight is 1.0.
    Case(
        "WeightedSum.v1",
        pairs(),
        {"losses": {"a": {**COS, "normalize": False}, "b": {**COS, "eps": 3.0, "normalize": False}}, "weights": {"b": 0.25}},
        id="unnormalised-parts",
        reference=weighted_reference(
            {"a": (cosine_distance_reference, {"normalize": False}), "b": (cosine_distance_reference, {"eps": 3.0, "normalize": False})}
        ),
    ),
    # Tuple guesses shared by two pair losses: the tuple gradients are added.
    Case(
        "WeightedSum.v1",
        labelled_pairs,
        {
            "losses": {"tight": {"@losses": "CosineEmbedding.v1"}, "loose": {"@losses": "CosineEmbedding.v1", "margin": 0.5}},
            "weights": {"tight": 0.5, "loose": 1.5},
        },
        id="pairs",
        reference=weighted_reference(
            {"tight": (cosine_embedding_reference, {}), "loose": (cosine_embedding_reference, {"margin": 0.5})}
        ),
    ),
    # A WeightedSum nested in a WeightedSum.
    Case(
        "WeightedSum.v1",
        samples,
        {
            "losses": {"inner": {"@losses": "WeightedSum.v1", "losses": {"cos": COS}, "weights": {"cos": 3.0}}, "mmd": MMD},
            "weights": {"inner": 0.5},
        },
        id="nested",
        reference=weighted_reference({"inner": (lambda g, t, s: [3.0 * v for v in cosine_distance_reference(g, t, {})], {}),
                                      "mmd": (mmd_reference, {"bandwidth": 2.0})}),
    ),
]
