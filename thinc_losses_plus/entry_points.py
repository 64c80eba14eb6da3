"""What this package registers, read from its installed metadata.

The entry points in ``setup.cfg`` are the only list of registered names;
tests, docs and the CLI read them from here, never from a copy.
"""
from importlib.metadata import EntryPoint, entry_points
from typing import Dict, List

DISTRIBUTION = "thinc-losses-plus"
LOSSES_GROUP = "thinc_losses"
FACTORIES_GROUP = "spacy_factories"

#: Names released Thinc registers in ``registry.losses`` itself. An entry
#: point with one of these names would replace Thinc's own (catalogue reads
#: entry points first) and silently change every config pinned to it.
THINC_BUILTIN_LOSSES = (
    "CategoricalCrossentropy.v1",
    "CategoricalCrossentropy.v2",
    "CategoricalCrossentropy.v3",
    "SequenceCategoricalCrossentropy.v1",
    "SequenceCategoricalCrossentropy.v2",
    "SequenceCategoricalCrossentropy.v3",
    "L2Distance.v1",
    "CosineDistance.v1",
)


def _ours(group: str) -> List[EntryPoint]:
    found = [
        ep
        for ep in entry_points(group=group)
        if ep.dist is not None and ep.dist.metadata["Name"].lower().replace("_", "-") == DISTRIBUTION
    ]
    return sorted(found, key=lambda ep: ep.name)


def loss_entry_points() -> Dict[str, EntryPoint]:
    """Name -> entry point of every loss this package registers."""
    return {ep.name: ep for ep in _ours(LOSSES_GROUP)}


def factory_entry_points() -> Dict[str, EntryPoint]:
    """Name -> entry point of every spaCy factory this package registers."""
    return {ep.name: ep for ep in _ours(FACTORIES_GROUP)}


def loss_names() -> List[str]:
    return list(loss_entry_points())
