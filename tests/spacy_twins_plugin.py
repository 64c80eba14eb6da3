"""A pytest plugin that builds every spaCy built-in with a ``*_with_loss`` twin as the twin.

``nlp.add_pipe("textcat")`` (and ``create_pipe``, and configs with
``factory = "textcat"``) build ``textcat_with_loss`` under the same component
name, so spaCy's own pipeline tests run against this package's components.
Loaded by tests/test_spacy_reference.py with ``-p spacy_twins_plugin``.
"""
from spacy.language import Language

from thinc_losses_plus.entry_points import factory_entry_points

TWINS = {}

_add_pipe = Language.add_pipe
_create_pipe = Language.create_pipe


def add_pipe(self, factory_name, name=None, **kwargs):
    if kwargs.get("source") is None and factory_name in TWINS:
        name = name or factory_name
        factory_name = TWINS[factory_name]
    return _add_pipe(self, factory_name, name, **kwargs)


def create_pipe(self, factory_name, name=None, **kwargs):
    if factory_name in TWINS:
        name = name or factory_name
        factory_name = TWINS[factory_name]
    return _create_pipe(self, factory_name, name, **kwargs)


def twins():
    """Built-in factory -> its ``*_with_loss`` twin, for every twin registered."""
    import spacy

    spacy.blank("xx")  # loads the spacy_factories entry points
    return {name[: -len("_with_loss")]: name for name in factory_entry_points() if Language.has_factory(name)}


def pytest_configure(config):
    TWINS.update(twins())
    Language.add_pipe = add_pipe
    Language.create_pipe = create_pipe


def pytest_unconfigure(config):
    Language.add_pipe = _add_pipe
    Language.create_pipe = _create_pipe
