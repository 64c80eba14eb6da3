"""Collection rules for ``python -m pytest`` at the repository root.

The suite runs the doctests of the package (``--doctest-modules``, see
pyproject.toml). Modules that need spaCy are collected only where spaCy is
installed: CI's Thinc 9.1 job runs without it, its Thinc 8.3 + spaCy 3.8
job with it.
"""
import importlib.util

collect_ignore_glob = ["benchmarks/*", "configs/*", "docs/*"]
if importlib.util.find_spec("spacy") is None:
    collect_ignore_glob.append("thinc_losses_plus/spacy_*.py")
    collect_ignore_glob.append("tests/spacy_*.py")
