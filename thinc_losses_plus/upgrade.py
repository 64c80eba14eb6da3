"""Rewrite ``@losses`` references in a config to the newest versions.

Plain functions over config *text*, so that a file keeps every comment,
blank line and key order: the text is read line by line, only the
``@losses = "..."`` lines of upgraded blocks are edited (and, where an
argument must be added, one line is inserted after them). The values of each
block are read with confection (interpolated when the config allows it), and
after rewriting each changed block is resolved through the registry, alone,
so a spaCy training config is handled without spaCy being installed.

Example:
    >>> old = '''
    ... [loss]
    ... # our tagger's loss
    ... @losses = "CategoricalCrossentropy.v3"
    ... names = ["NOUN", "VERB"]
    ... '''
    >>> result = upgrade_config(old)
    >>> print(result.text)
    <BLANKLINE>
    [loss]
    # our tagger's loss
    @losses = "SparseCategoricalCrossentropy.v4"
    names = ["NOUN", "VERB"]
    <BLANKLINE>
    >>> result.changes[0].new
    'SparseCategoricalCrossentropy.v4'
    >>> verify_upgrade(result)
    []
"""
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

TRUTHS_CHOICES = ("dense", "sparse")
TO_CHOICES = ("latest",)

_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_LOSS_LINE = re.compile(
    r'^(?P<head>@losses\s*[=:]\s*)(?P<quote>"?)(?P<name>[^"\'\s]+)(?P=quote)(?P<tail>\s*)$'
)


class UpgradeError(ValueError):
    """The config cannot be read, or an upgrade cannot be applied safely."""


# What each upgrade means --------------------------------------------------

CROSSENTROPY_LOSS_NOTE = (
    "reported loss is now the cross-entropy -sum(t * log(p + 1e-9)) / n "
    "(was the sum of the squared gradient entries); gradient unchanged ((p - t) * mask / n)"
)
SEQUENCE_LOSS_NOTE = (
    "reported loss is now the sum of the sequences' cross-entropies, not divided by the "
    "number of sequences (was the sum of the squared gradient entries); gradient unchanged "
    "((p - t) * mask, divided by the number of sequences when normalize)"
)
GUESSES_NOTE = (
    "guesses must now be probability rows in [0, 1] summing to 1 "
    "(Thinc's v1-v3 only checked [0, 1]); add from_logits = true to pass logits"
)
L2_NOTE = (
    "reported loss is now 0.5 * sum((g - t)^2) / n (was sum(((g - t) / n)^2)); "
    "gradient unchanged ((g - t) / n); n = rows when normalize, else 1"
)
COSINE_NOTE = (
    "eps now bounds each norm from below, 1 - g.t / (max(|g|, eps) * max(|t|, eps)) with "
    "eps = 1e-8 (Thinc's v1 added 1e-8 to every element of guesses and truths, which shifts "
    "every cosine slightly); a zero row now gives loss 1 and a finite gradient; the gradient "
    "is the exact derivative of the new loss; with ignore_zeros = true, rows whose truth is "
    "all zeros no longer count in n (v1 divided by all rows)"
)


@dataclass(frozen=True)
class Step:
    """One upgrade of one reference: the new name, lines to add, what it means."""

    new: str
    add: Tuple[Tuple[str, str], ...] = ()  # (key, config literal) inserted after @losses
    notes: Tuple[str, ...] = ()


#: Key under which :func:`upgrade_config` passes the enclosing spaCy
#: component's factory to the rules (never a config key: it has a space).
COMPONENT_KEY = "spacy component"


class NeedsHint(Exception):
    """The arguments do not say which upgrade applies (dense or sparse truths)."""


def implied_truths(args: Dict[str, Any], component: Optional[str] = None) -> Tuple[Optional[str], List[str]]:
    """Which truths Thinc's v1-v3 categorical arguments imply, and why.

    ``names``, ``neg_prefix``, a string ``missing_value`` and
    ``label_smoothing > 0`` (Thinc's v3 smooths only sparse labels and raises
    on dense truths) imply sparse labels, and so does a block that is the
    ``loss`` of one of this package's spaCy components (``component``, the
    factory name): they hand Thinc's categorical losses labels. Otherwise
    Thinc accepted both dense rows and labels, and nothing tells (``None``).

    >>> implied_truths({"names": ["A", "B"], "normalize": False})
    ('sparse', ["'names'"])
    >>> implied_truths({"missing_value": -1})
    (None, [])
    """
    reasons = []
    if component is not None:
        reasons.append(f"the spaCy component {component!r} (it passes labels)")
    if args.get("names"):
        reasons.append("'names'")
    if args.get("neg_prefix"):
        reasons.append("'neg_prefix'")
    if isinstance(args.get("missing_value"), str):
        reasons.append("a string 'missing_value'")
    smoothing = args.get("label_smoothing")
    if isinstance(smoothing, (int, float)) and not isinstance(smoothing, bool) and smoothing > 0:
        reasons.append("'label_smoothing' (Thinc smooths only sparse labels)")
    return ("sparse" if reasons else None), reasons


def _truths(args: Dict[str, Any], hint: Optional[str]) -> Tuple[str, str]:
    kind, reasons = implied_truths(args, args.get(COMPONENT_KEY))
    if kind is not None:
        if hint is not None and hint != kind:
            raise NeedsHint(
                f"--truths {hint} contradicts the block, which gets {kind} labels ({'; '.join(reasons)}): "
                "leave out --truths to upgrade it for labels, or change the block if its truths are dense rows"
            )
        return kind, f"truths: sparse labels, implied by {'; '.join(reasons)}"
    if hint is None:
        raise NeedsHint(
            "Thinc's v1-v3 accept dense truth rows and int/str labels alike and the arguments "
            "do not say which this config gets: pass --truths dense or --truths sparse"
        )
    return hint, f"truths: {hint} (from --truths {hint})"


def _categorical_step(args: Dict[str, Any], hint: Optional[str]) -> Step:
    kind, why = _truths(args, hint)
    if kind == "sparse":
        name = "SparseCategoricalCrossentropy.v4"
        why += "; an array of truth rows is now refused (use CategoricalCrossentropy.v4 for those)"
    else:
        name = "CategoricalCrossentropy.v4"
        why += "; int/str labels are now refused (use SparseCategoricalCrossentropy.v4 for those)"
    return Step(name, (), (why, CROSSENTROPY_LOSS_NOTE, GUESSES_NOTE))


def _sequence_step(args: Dict[str, Any], hint: Optional[str]) -> Step:
    kind, why = _truths(args, hint)
    add: Tuple[Tuple[str, str], ...] = ()
    if kind == "dense":
        add = (("sparse", "false"),)
        why += "; 'sparse = false' added (v4 reads labels by default)"
    return Step("SequenceCategoricalCrossentropy.v4", add, (why, SEQUENCE_LOSS_NOTE, GUESSES_NOTE))


def _fixed_step(step: Step) -> Callable[[Dict[str, Any], Optional[str]], Step]:
    return lambda args, hint: step


#: Old name -> function(args of the block, truths hint) -> Step. Every
#: argument keeps its name and value: each target accepts the old version's
#: arguments with identical defaults (asserted by tests/test_upgrade.py).
RULES: Dict[str, Callable[[Dict[str, Any], Optional[str]], Step]] = {
    "CategoricalCrossentropy.v1": _categorical_step,
    "CategoricalCrossentropy.v2": _categorical_step,
    "CategoricalCrossentropy.v3": _categorical_step,
    "SequenceCategoricalCrossentropy.v1": _sequence_step,
    "SequenceCategoricalCrossentropy.v2": _sequence_step,
    "SequenceCategoricalCrossentropy.v3": _sequence_step,
    "L2Distance.v1": _fixed_step(Step("L2Distance.v2", (), (L2_NOTE,))),
    "CosineDistance.v1": _fixed_step(Step("CosineDistance.v2", (), (COSINE_NOTE,))),
}


#: What Thinc's own calculators take their gradient with respect to (their
#: classes carry no docstring; ``info`` and the docs show this).
THINC_GRADIENTS: Dict[str, str] = {
    "CategoricalCrossentropy": "(p - t) * mask / n, with respect to the logits (Thinc's Softmax skips its Jacobian)",
    "SequenceCategoricalCrossentropy": "(p - t) * mask per sequence, divided by the number of sequences when "
    "normalize, with respect to the logits",
    "L2Distance": "(g - t) / n, the exact derivative of 0.5 * sum((g - t)^2) / n with respect to the guesses",
    "CosineDistance": "the derivative of 1 - cos(g + 1e-8, t + 1e-8) with respect to the guesses, divided by n",
}


def upgrade_targets(name: str) -> List[str]:
    """The names ``name`` may be upgraded to (several when the truths decide).

    >>> upgrade_targets("CategoricalCrossentropy.v2")
    ['CategoricalCrossentropy.v4', 'SparseCategoricalCrossentropy.v4']
    """
    return sorted(upgrade_notes(name))


def upgrade_notes(name: str) -> Dict[str, List[str]]:
    """Target name -> what upgrading ``name`` to it changes (for ``info``)."""
    found: Dict[str, List[str]] = {}
    if name in RULES:
        for hint in TRUTHS_CHOICES:
            step = plan_step(name, {}, hint, None)
            notes = [n for n in step.notes if not n.startswith("truths:")]
            found.setdefault(step.new, notes)
    return found


# Reading the text ----------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """One ``@losses`` line: its block, its 0-based line index and the name."""

    section: str
    line: int
    name: str


def find_references(text: str) -> List[Reference]:
    """Every ``@losses`` line of a config text, in order.

    >>> find_references('[training.loss]\\n@losses = "L2Distance.v1"\\n')
    [Reference(section='training.loss', line=1, name='L2Distance.v1')]
    """
    found = []
    section = ""
    for i, line in enumerate(text.splitlines()):
        header = _SECTION.match(line)
        if header and not line[:1].isspace():
            section = header.group("name").strip()
            continue
        match = _LOSS_LINE.match(line)
        if match and section:
            found.append(Reference(section, i, match.group("name")))
    return found


def parse_config(text: str) -> Dict[str, Any]:
    """The config as nested dicts, interpolated when its variables allow it."""
    from thinc.api import Config

    try:
        return Config().from_str(text, interpolate=True)
    except Exception:
        try:
            return Config().from_str(text, interpolate=False)
        except Exception as err:
            raise UpgradeError(f"Cannot read the config: {err}") from err


def block_of(config: Dict[str, Any], section: str) -> Dict[str, Any]:
    node: Any = config
    for part in section.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UpgradeError(f"Cannot find section [{section}] in the parsed config")
        node = node[part]
    return node


def block_args(block: Dict[str, Any]) -> Dict[str, Any]:
    """The block's arguments: its values, without ``@losses`` and sub-blocks."""
    return {k: v for k, v in block.items() if not k.startswith("@") and not isinstance(v, dict)}


def _package_factories() -> set:
    from .entry_points import factory_entry_points

    return set(factory_entry_points())


def _component_of(config: Dict[str, Any], section: str, factories: set) -> Optional[str]:
    """The factory of the spaCy component whose ``loss`` this block is, if ours."""
    parent, _, key = section.rpartition(".")
    if key != "loss" or not parent.startswith("components."):
        return None
    try:
        factory = block_of(config, parent).get("factory")
    except UpgradeError:
        return None
    return factory if factory in factories else None


# Upgrading -----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What happens to one reference. ``problem`` set: it is left as it was."""

    section: str
    line: int  # 1-based line of the @losses reference in the original text
    old: str
    new: Optional[str]
    added: Tuple[Tuple[str, str], ...] = ()
    notes: Tuple[str, ...] = ()
    problem: Optional[str] = None

    def describe(self) -> str:
        head = f"[{self.section}] (line {self.line}): {self.old} -> {self.new or '?'}"
        lines = [head]
        lines += [f"  - {note}" for note in self.notes]
        if self.problem:
            lines.append(f"  ! not upgraded: {self.problem}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Unresolved:
    """A reference to a name the registry does not know: left as it is, with a warning."""

    section: str
    line: int  # 1-based
    name: str
    suggestions: Tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"WARNING: [{self.section}] (line {self.line}): no loss named {self.name!r} in the registry"
        if self.suggestions:
            text += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        else:
            text += " (is the package that provides it installed?)"
        return text + " Left as it is."


@dataclass
class UpgradeResult:
    text: str
    changes: List[Change] = field(default_factory=list)
    references: List[Reference] = field(default_factory=list)  # every @losses line found
    unresolved: List[Unresolved] = field(default_factory=list)

    @property
    def upgradable(self) -> bool:
        """True when some reference has a newer version (applied or not)."""
        return bool(self.changes)

    @property
    def problems(self) -> List[Change]:
        return [c for c in self.changes if c.problem]

    @property
    def current(self) -> int:
        """How many references name a registered loss with nothing newer."""
        return len(self.references) - len(self.changes) - len(self.unresolved)

    def report(self) -> str:
        if not self.references:
            return "No @losses reference in the config."
        lines = [c.describe() for c in self.changes] + [u.describe() for u in self.unresolved]
        n = self.current
        if n and lines:
            lines.append(f"{n} other @losses reference{' is' if n == 1 else 's are'} current.")
        elif n:
            lines.append("The @losses reference is current." if n == 1 else f"All {n} @losses references are current.")
        return "\n".join(lines)


def plan_step(name: str, args: Dict[str, Any], truths: Optional[str], known: Optional[set]) -> Step:
    """Follow the rules from ``name`` to the newest version (``--to latest``)."""
    notes: List[str] = []
    add: List[Tuple[str, str]] = []
    current = name
    seen = {name}
    while current in RULES:
        step = RULES[current](dict(args, **{k: v for k, v in add}), truths)
        if known is not None and step.new not in known:
            raise UpgradeError(f"{step.new} is not registered (is thinc-losses-plus installed?)")
        notes.extend(step.notes)
        add.extend(step.add)
        current = step.new
        if current in seen:  # pragma: no cover - a cycle in RULES is a bug
            raise UpgradeError(f"upgrade rules loop at {current}")
        seen.add(current)
    return Step(current, tuple(add), tuple(notes))


def registered_loss_names() -> set:
    """Every name Thinc's ``registry.losses`` can resolve (entry points included)."""
    from .catalog import list_losses

    return {row.name for row in list_losses()}


def upgrade_config(
    text: str, *, to: str = "latest", truths: Optional[str] = None, known: Optional[set] = None
) -> UpgradeResult:
    """Upgrade every ``@losses`` reference of ``text`` that has a newer version.

    to: "latest" (the only target so far: follow the rules to the newest name).
    truths: "dense" or "sparse" for categorical references whose arguments do
        not imply their truths (see :func:`implied_truths`); None: leave such
        references unchanged and report them as problems. A hint that
        contradicts what a reference's arguments imply is a problem for that
        reference, never silently overridden.
    known: names a target must have to be written (default: every name the
        registry can resolve); a target outside it is reported as a problem,
        and a reference to a name outside it (with no upgrade rule) gets a
        warning in :attr:`UpgradeResult.unresolved`.
    """
    from .catalog import suggest

    if to not in TO_CHOICES:
        raise UpgradeError(f"--to must be one of {list(TO_CHOICES)}, got {to!r}")
    if truths is not None and truths not in TRUTHS_CHOICES:
        raise UpgradeError(f"--truths must be one of {list(TRUTHS_CHOICES)}, got {truths!r}")
    found = [r for r in find_references(text) if not r.name.startswith("${")]  # a variable: not ours to check
    if not found:
        return UpgradeResult(text)
    if known is None:
        known = registered_loss_names()
    unresolved = [
        Unresolved(r.section, r.line + 1, r.name, tuple(suggest(r.name, known)))
        for r in found
        if r.name not in RULES and r.name not in known
    ]
    references = [r for r in found if r.name in RULES]
    if not references:
        return UpgradeResult(text, references=found, unresolved=unresolved)
    config = parse_config(text)
    lines = text.splitlines(keepends=True)
    changes = []
    factories = _package_factories()
    for ref in references:
        args = block_args(block_of(config, ref.section))
        component = _component_of(config, ref.section, factories)
        if component is not None:
            args[COMPONENT_KEY] = component
        try:
            step = plan_step(ref.name, args, truths, known)
        except (NeedsHint, UpgradeError) as err:
            changes.append(Change(ref.section, ref.line + 1, ref.name, None, problem=str(err)))
            continue
        args.pop(COMPONENT_KEY, None)
        clashes = [key for key, _ in step.add if key in args]
        if clashes:
            problem = f"the block already sets {clashes}, which the upgrade must add"
            changes.append(Change(ref.section, ref.line + 1, ref.name, step.new, problem=problem))
            continue
        lines[ref.line] = _rewrite_line(lines[ref.line], step, "\r\n" if "\r\n" in text else "\n")
        changes.append(Change(ref.section, ref.line + 1, ref.name, step.new, step.add, step.notes))
    return UpgradeResult("".join(lines), changes, found, unresolved)


def _rewrite_line(line: str, step: Step, newline: str) -> str:
    """The ``@losses`` line with the new name, followed by the added arguments."""
    body = line.rstrip("\r\n")
    ending = line[len(body):]  # "" on a last line without a newline
    match = _LOSS_LINE.match(body)
    assert match is not None
    q = match.group("quote")
    out = f"{match.group('head')}{q}{step.new}{q}{match.group('tail')}"
    for key, value in step.add:
        out += f"{ending or newline}{key} = {value}"
    return out + ending


def verify_upgrade(result: UpgradeResult) -> List[str]:
    """Resolve every rewritten loss block; return one message per failure.

    Only the loss blocks are resolved (with Thinc's registry), so a spaCy
    training config is checked without spaCy; the config's variables are
    interpolated first when it allows.
    """
    from thinc.api import registry

    rewritten = [c for c in result.changes if not c.problem]
    if not rewritten:
        return []
    try:
        config = parse_config(result.text)
    except UpgradeError as err:
        return [str(err)]
    failures = []
    for change in rewritten:
        try:
            block = block_of(config, change.section)
            registry.resolve({"loss": block}, validate=True)
        except Exception as err:
            message = " ".join(str(err).split())
            failures.append(f"[{change.section}] {change.new} would not resolve: {message}")
    return failures
