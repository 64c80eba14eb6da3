"""Every family's battery cases: ``tests/cases/<family>.py`` defines ``CASES``."""
import importlib
import pkgutil


def all_cases():
    cases = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        cases.extend(importlib.import_module(f"{__name__}.{module.name}").CASES)
    return cases
