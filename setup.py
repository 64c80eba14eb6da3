"""Build step that setup.cfg cannot express: ship the example configs as package data.

The example configs live once, at the top of the repository (``configs/``,
where the tests, the docs and the main job use them). Building a wheel copies
``configs/losses/*.cfg`` and ``configs/spacy/*.cfg`` into
``thinc_losses_plus/configs/`` inside it, so ``thinc-losses example NAME``
finds them after a plain ``pip install`` (MANIFEST.in puts them in the sdist,
which builds the same wheel). Editable installs read ``configs/`` itself.
Everything else is declared in setup.cfg.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
EXAMPLE_GROUPS = ("losses", "spacy")


class build_py_with_examples(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the editable package reads configs/ from the checkout
        for group in EXAMPLE_GROUPS:
            target = Path(self.build_lib, "thinc_losses_plus", "configs", group)
            self.mkpath(str(target))
            for path in sorted((ROOT / "configs" / group).glob("*.cfg")):
                self.copy_file(str(path), str(target / path.name))


setup(cmdclass={"build_py": build_py_with_examples})
