"""The package's version, in one place.

``setup.cfg`` reads it (``version = attr: thinc_losses_plus.about.__version__``,
without importing the package) and ``thinc_losses_plus.__version__`` re-exports
it, as spaCy's ``spacy/about.py`` does.
"""
__version__ = "0.1.0"
