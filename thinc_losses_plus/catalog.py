"""The catalogue: what the registry knows about each loss, for ``list``, ``info`` and the docs.

Everything here is read, never typed twice: the names from the entry points
(and Thinc's registry), the arguments from each factory's signature, and the
prose (formula, shapes, gradient convention, Args, Example, Config,
References) from the class docstring of the calculator the factory returns.
:mod:`thinc_losses_plus.apidocs` renders it as ``docs/api.md``.

Example:
    >>> info = describe("L2Distance.v1")
    >>> info.provider, [a.name for a in info.arguments]
    ('thinc', ['normalize'])
    >>> print(config_snippet(info))
    [loss]
    @losses = "L2Distance.v1"
    normalize = true
"""
import difflib
import functools
import inspect
import json
import re
import sys
import typing
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .entry_points import DISTRIBUTION, LOSSES_GROUP, loss_entry_points

#: Google-style docstring sections this module reads. A header alone on its
#: line ("Args:", "Config::") opens an indented block; "Shapes: ..." and
#: "Gradient: ..." may also start an ordinary paragraph.
SECTIONS = ("Shapes", "Gradient", "Args", "Example", "Examples", "Config", "References", "Returns", "Note")
_HEADER = re.compile(r"^(?P<name>%s)::?(?:\s+(?P<rest>\S.*))?$" % "|".join(SECTIONS))
_VERSION = re.compile(r"^(?P<base>.+)\.v(?P<n>\d+)$")
DEFAULT_LOSS_TEXT = (
    "a Python `float` from `__call__` and `get_loss`; `get_loss_per_example` gives the "
    "unnormalised loss of each example, `get_loss_per_element` the unreduced terms "
    "(PyTorch's `reduction=\"none\"`)"
)


# Annotations and values ----------------------------------------------------


def format_annotation(annotation: Any) -> str:
    """A type annotation as short, stable text (the same on every Python).

    >>> from typing import Dict, List, Optional, Union
    >>> format_annotation(Optional[Union[int, str]])
    'Optional[Union[int, str]]'
    >>> format_annotation(Optional[Union[List[float], Dict[str, float]]])
    'Optional[Union[Dict[str, float], List[float]]]'
    """
    if annotation is inspect.Parameter.empty:
        return ""
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        # sorted: typing caches Union[int, str] and Union[str, int] as one
        # object, so the order in the source is not what Python keeps
        rest = sorted(format_annotation(a) for a in args if a is not type(None))
        inner = rest[0] if len(rest) == 1 else f"Union[{', '.join(rest)}]"
        return f"Optional[{inner}]" if len(rest) < len(args) else inner
    if origin is not None:
        name = getattr(annotation, "_name", None) or getattr(origin, "__name__", str(origin))
        name = {"list": "List", "dict": "Dict", "tuple": "Tuple"}.get(name, name)
        if origin is typing.Literal:
            return f"Literal[{', '.join(map(repr, args))}]"
        return f"{name}[{', '.join(map(format_annotation, args))}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def config_value(value: Any) -> str:
    """A Python default as a config literal (JSON: ``true``, ``null``, ``"x"``)."""
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return json.dumps(value)


# Docstrings ----------------------------------------------------------------


@dataclass
class Docstring:
    summary: str = ""
    description: str = ""  # the prose (formulas included) outside the sections
    sections: Dict[str, str] = field(default_factory=dict)
    args: Dict[str, str] = field(default_factory=dict)  # from "Args:"


def parse_docstring(doc: Optional[str]) -> Docstring:
    """Split a class docstring into summary, description and sections.

    >>> d = parse_docstring('''Sum.
    ...
    ... Shapes: guesses (N,).
    ...
    ... Args:
    ...     normalize: divide by N,
    ...         the rows.
    ... ''')
    >>> d.summary, d.sections["Shapes"], d.args
    ('Sum.', 'guesses (N,).', {'normalize': 'divide by N, the rows.'})
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    i = 0
    while i < len(lines) and lines[i].strip() and not lines[i].rstrip().endswith("::"):
        i += 1
    result = Docstring(summary=" ".join(" ".join(lines[:i]).split()))
    prose: List[str] = []
    while i < len(lines):
        match = _HEADER.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        name, rest = match.group("name"), match.group("rest")
        body: List[str] = []
        i += 1
        if rest:  # an inline section: the rest of its paragraph
            body.append(rest)
            while i < len(lines) and lines[i].strip() and not _HEADER.match(lines[i]):
                body.append(lines[i].strip())
                i += 1
            text = " ".join(body)
        else:  # an indented block, up to the next unindented line
            while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
                body.append(lines[i])
                i += 1
            text = inspect.cleandoc("\n".join(body))
        result.sections[name.rstrip("s") if name == "Examples" else name] = text
    result.description = "\n".join(prose).strip()
    if "Args" in result.sections:
        result.args = _parse_args(result.sections["Args"])
    return result


def _parse_args(block: str) -> Dict[str, str]:
    args: Dict[str, str] = {}
    current = None
    for line in block.splitlines():
        match = re.match(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if match and not line[:1].isspace():
            current = match.group(1)
            args[current] = match.group(2).strip()
        elif current and line.strip():
            args[current] = f"{args[current]} {line.strip()}".strip()
    return args


def inline_markdown(text: str) -> str:
    text = re.sub(r":(?:class|func|meth|mod|attr):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def one_line(text: str) -> str:
    return " ".join(inline_markdown(text).split()).replace("|", "\\|")


# What a registered name is -------------------------------------------------


@dataclass(frozen=True)
class Argument:
    name: str
    type: str
    default: Any  # inspect.Parameter.empty when required
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass
class LossInfo:
    name: str
    provider: str  # the distribution that provides the name
    factory: str  # module:function
    calculator: Optional[type]
    arguments: List[Argument]
    doc: Docstring

    @property
    def class_path(self) -> str:
        if self.calculator is None:
            return ""
        module = self.calculator.__module__
        if module.startswith("thinc_losses_plus.") and hasattr(sys.modules.get("thinc_losses_plus"), self.calculator.__name__):
            module = "thinc_losses_plus"
        return f"{module}.{self.calculator.__name__}"

    @property
    def gradient(self) -> str:
        """The gradient convention: the "Gradient:" paragraph, or the
        sentences saying what the gradient is taken with respect to."""
        if "Gradient" in self.doc.sections:
            return self.doc.sections["Gradient"]
        if self.provider == "thinc" and self.calculator is not None:
            from .upgrade import THINC_GRADIENTS

            if self.calculator.__name__ in THINC_GRADIENTS:
                return THINC_GRADIENTS[self.calculator.__name__]
        said = _sentences_with(self.doc.description, "respect to")
        if not said and self.calculator is not None:
            said = _sentences_with(sys.modules[self.calculator.__module__].__doc__ or "", "respect to")
        return " ".join(said) or "the exact derivative of the loss with respect to the guesses"


def _sentences_with(text: str, words: str) -> List[str]:
    """The sentences of a docstring's prose containing ``words``; a literal
    block (after ``::``) joins the sentence it ends, as inline code."""
    prose: List[str] = []
    block: List[str] = []
    in_block = False
    for line in text.splitlines() + [""]:
        if in_block and (not line.strip() or line[:1].isspace()):
            if line.strip():
                block.append(" ".join(line.split()))
            continue
        if block:
            prose.append("``" + "; ".join(block) + "``.")
            block = []
        in_block = line.rstrip().endswith("::")
        prose.append(line.rstrip()[:-1] if in_block else line)
    flat = " ".join(" ".join(prose).split())
    return [s for s in re.split(r"(?<=\.)\s+(?=[A-Z`(])", flat) if words in s]


def _distribution_of(obj: Any) -> str:
    top = (getattr(obj, "__module__", None) or "").split(".")[0]
    found = _packages_distributions().get(top)
    return found[0] if found else top


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Dict[str, List[str]]:
    try:
        from importlib.metadata import packages_distributions
    except ImportError:  # pragma: no cover - Python 3.9
        return {}
    return packages_distributions()


def _loss_registry():
    from thinc.api import registry

    return registry.losses


class UnknownLoss(KeyError):
    """No loss of that name in the registry; ``suggestions`` are the closest names."""

    def __init__(self, name: str, suggestions: List[str]):
        message = f"No loss named {name!r} in the registry."
        if suggestions:
            message += " Did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        super().__init__(message)
        self.name = name
        self.suggestions = suggestions

    def __str__(self) -> str:
        return self.args[0]


def describe(name: str) -> LossInfo:
    """Everything the registry and the docstrings say about one loss name.

    Raises :class:`UnknownLoss` (a KeyError naming the closest registered
    names) for a name the registry cannot resolve.
    """
    ours = loss_entry_points()
    losses = _loss_registry()
    if name in ours:
        factory = ours[name].load()
        provider = DISTRIBUTION
    else:
        try:
            factory = losses.get(name)
        except Exception as err:
            raise UnknownLoss(name, suggest(name, [row.name for row in list_losses()])) from err
        provider = _entry_point_provider(name) or _distribution_of(factory)
    signature = inspect.signature(factory)
    hints = typing.get_type_hints(factory)
    calculator = hints.get("return")
    if not isinstance(calculator, type):
        calculator = None
    doc = parse_docstring(calculator.__doc__ if calculator is not None and calculator.__doc__ else factory.__doc__)
    arguments = [
        Argument(
            p.name,
            format_annotation(hints.get(p.name, p.annotation)),
            p.default,
            one_line(doc.args.get(p.name, "")),
        )
        for p in signature.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return LossInfo(name, provider, f"{factory.__module__}:{factory.__qualname__}", calculator, arguments, doc)


def _entry_point_provider(name: str) -> Optional[str]:
    from importlib.metadata import entry_points

    for ep in entry_points(group=LOSSES_GROUP):
        if ep.name == name:
            return ep.dist.metadata["Name"] if ep.dist is not None else ep.module.split(".")[0]
    return None


def config_snippet(info: LossInfo, section: str = "loss") -> str:
    """A config block for ``info.name`` with every argument at its default
    (a required argument, which has none, is named in a comment)."""
    lines = [f"[{section}]", f'@losses = "{info.name}"']
    for arg in info.arguments:
        if arg.required:
            lines.append(f"# {arg.name}: required ({arg.type})")
        else:
            lines.append(f"{arg.name} = {config_value(arg.default)}")
    return "\n".join(lines)


# The whole registry (``list``) ---------------------------------------------


@dataclass(frozen=True)
class Listing:
    name: str
    provider: str
    shadows: Tuple[str, ...] = ()  # providers whose registration of the name is hidden

    @property
    def warning(self) -> str:
        if not self.shadows:
            return ""
        return f"shadows {self.name} of {', '.join(self.shadows)}: configs pinned to it now get {self.provider}'s"


def build_listing(entry_points: Iterable[Tuple[str, str]], builtins: Dict[str, str]) -> List[Listing]:
    """Combine ``(name, provider)`` entry points and built-in ``name -> provider``.

    Catalogue looks entry points up first (the first one found wins), so an
    entry point named like a built-in, or a name two packages declare, hides
    the others: the listing says whose.

    >>> rows = build_listing([("L2Distance.v1", "some-plugin")], {"L2Distance.v1": "thinc"})
    >>> rows[0].warning
    "shadows L2Distance.v1 of thinc: configs pinned to it now get some-plugin's"
    """
    providers: Dict[str, List[str]] = defaultdict(list)
    for name, provider in entry_points:
        providers[name].append(provider)
    rows = []
    for name in sorted(set(providers) | set(builtins)):
        found = providers.get(name, [])
        if name in builtins:
            found = found + [builtins[name]]
        rows.append(Listing(name, found[0], tuple(found[1:])))
    return rows


def list_losses() -> List[Listing]:
    """Every name Thinc's ``registry.losses`` can resolve, with its provider."""
    from importlib.metadata import entry_points

    import catalogue

    losses = _loss_registry()
    points = []
    for ep in entry_points(group=losses.entry_point_namespace):
        points.append((ep.name, ep.dist.metadata["Name"] if ep.dist is not None else ep.module.split(".")[0]))
    builtins = {
        key[-1]: _distribution_of(func)
        for key, func in catalogue._get_all(losses.namespace).items()
        if len(key) == len(losses.namespace) + 1
    }
    return build_listing(points, builtins)


def newer_versions(name: str, names: Iterable[str]) -> List[str]:
    """Names of the same loss with a higher version number.

    >>> newer_versions("L2Distance.v1", ["L2Distance.v2", "L1Distance.v1"])
    ['L2Distance.v2']
    """
    match = _VERSION.match(name)
    if not match:
        return []
    found = []
    for other in names:
        m = _VERSION.match(other)
        if m and m.group("base") == match.group("base") and int(m.group("n")) > int(match.group("n")):
            found.append((int(m.group("n")), other))
    return [other for _, other in sorted(found)]


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> List[str]:
    """The names a mistyped ``name`` probably meant, best first (at most ``n``).

    The name in another case; else the newest version of the same loss (a
    missing or unknown version); else close spellings, one per loss.

    >>> names = ["SparseCategoricalCrossentropy.v4", "CategoricalCrossentropy.v3", "CategoricalCrossentropy.v4"]
    >>> suggest("sparsecategoricalcrossentropy.v4", names)
    ['SparseCategoricalCrossentropy.v4']
    >>> suggest("CategoricalCrossentropy", names)
    ['CategoricalCrossentropy.v4']
    >>> suggest("SparseCategoricalCrossentropy.v3", names)
    ['SparseCategoricalCrossentropy.v4']
    >>> suggest("SparseCategoricalCrosentropy.v4", names)
    ['SparseCategoricalCrossentropy.v4', 'CategoricalCrossentropy.v4']
    >>> suggest("Nothing.v1", names)
    []
    """
    candidates = sorted(set(candidates))
    by_lower = {c.lower(): c for c in candidates}
    key = name.strip().lower()
    if key in by_lower:
        return [by_lower[key]]
    match = _VERSION.match(key)
    base = match.group("base") if match else key
    versions = []
    for candidate in candidates:
        m = _VERSION.match(candidate)
        if m and m.group("base").lower() == base:
            versions.append((int(m.group("n")), candidate))
    if versions:
        return [max(versions)[1]]
    found: Dict[str, str] = {}  # one per loss: the closest version
    for close in difflib.get_close_matches(key, list(by_lower), n=3 * n, cutoff=0.8):
        candidate = by_lower[close]
        m = _VERSION.match(candidate)
        found.setdefault(m.group("base") if m else candidate, candidate)
    return list(found.values())[:n]


# docs/api.md ---------------------------------------------------------------
