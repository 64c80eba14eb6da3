"""The example configs, as package data: one per registered loss, and the spaCy ones.

They live once, in the repository's ``configs/`` (``configs/losses/NAME.cfg``
for each loss name, ``configs/spacy/NAME.cfg`` for ready spaCy training
configs). Building a wheel copies them into ``thinc_losses_plus/configs/``
(see ``setup.py``), so after a plain ``pip install`` they are read from the
package; in a source checkout or an editable install, from ``configs/``.
``thinc-losses example NAME`` prints one.

Example:
    >>> example = find_example("L2Distance.v2")
    >>> example.kind, example.path.name
    ('loss', 'L2Distance.v2.cfg')
    >>> "@losses" in example.text()
    True
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

#: The example groups: sub-directory -> what its files are.
GROUPS = {"losses": "loss", "spacy": "spacy"}


@dataclass(frozen=True)
class Example:
    """One shipped config: a loss name (``kind="loss"``) or a spaCy example."""

    name: str  # "L2Distance.v2", "textcat_class_weights"
    kind: str  # "loss" or "spacy"
    path: Path

    def text(self) -> str:
        return self.path.read_text(encoding="utf8")

    @property
    def summary(self) -> str:
        """What the example is for: the first sentence of the file's opening comment."""
        said = []
        for line in self.text().splitlines():
            if not line.startswith("#") or not line.strip("# "):
                break
            said.append(line.lstrip("#").strip())
        first = re.split(r"(?<=\.)\s+(?=[A-Z])", " ".join(said), maxsplit=1)[0]
        return first.rstrip(":,;")


def examples_root() -> Path:
    """The directory holding ``losses/`` and ``spacy/``: in the package, else the checkout's ``configs/``."""
    here = Path(__file__).resolve().parent
    for root in (here / "configs", here.parent / "configs"):
        if (root / "losses").is_dir():
            return root
    raise FileNotFoundError(
        f"Cannot find the example configs: neither {here / 'configs'} nor {here.parent / 'configs'} exists "
        "(reinstall thinc-losses-plus)"
    )


def list_examples(root: Optional[Path] = None) -> List[Example]:
    """Every shipped example: the spaCy ones first, then one per loss name, sorted."""
    root = examples_root() if root is None else root
    found = []
    for group, kind in sorted(GROUPS.items(), key=lambda item: item[1] != "spacy"):
        for path in sorted((root / group).glob("*.cfg")):
            found.append(Example(path.name[: -len(".cfg")], kind, path))
    return found


def find_example(name: str, root: Optional[Path] = None) -> Example:
    """The example called ``name`` (``"textcat_focal"`` or ``"textcat_focal.cfg"`` alike).

    Raises KeyError (its message names the closest examples) when none is.
    """
    from .catalog import suggest

    examples = list_examples(root)
    wanted = name[: -len(".cfg")] if name.endswith(".cfg") else name
    wanted = wanted.split("/")[-1]
    for example in examples:
        if example.name == wanted:
            return example
    message = f"No example config named {name!r}."
    close = suggest(wanted, [e.name for e in examples])
    if close:
        message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    raise KeyError(message)


def is_spacy_example(name: str) -> bool:
    try:
        return find_example(name).kind == "spacy"
    except KeyError:
        return False


def example_text(name: str) -> str:
    """The config ``thinc-losses example NAME`` prints.

    A shipped example (a loss name or a spaCy example) as it is in the file;
    a registered loss with no shipped example (one of Thinc's own names, or
    another plugin's) as a ``[loss]`` block with every argument at its
    default. Raises KeyError naming the closest names otherwise.

    >>> print(example_text("L2Distance.v1"))
    # L2Distance.v1 (thinc): every argument at its default; no example config ships for it
    [loss]
    @losses = "L2Distance.v1"
    normalize = true
    <BLANKLINE>
    """
    from .catalog import config_snippet, describe, list_losses, suggest

    try:
        text = find_example(name).text()
        return text if text.endswith("\n") else text + "\n"
    except KeyError:
        pass
    try:
        info = describe(name)
    except KeyError:
        close = suggest(name, [e.name for e in list_examples()] + [row.name for row in list_losses()])
        message = f"No example config or loss named {name!r}."
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        raise KeyError(message) from None
    head = f"# {info.name} ({info.provider}): every argument at its default; no example config ships for it"
    return f"{head}\n{config_snippet(info)}\n"
