"""``thinc-losses`` / ``python -m thinc_losses_plus``: a thin command line.

Each command is a plain function that formats what a tested function
returns and gives an exit code: :func:`list_command` ->
:func:`thinc_losses_plus.catalog.list_losses`, :func:`info_command` ->
:func:`thinc_losses_plus.catalog.describe`, :func:`example_command` ->
:func:`thinc_losses_plus.examples.example_text`, :func:`run_upgrade` ->
:func:`thinc_losses_plus.upgrade.upgrade_config` and
:func:`~thinc_losses_plus.upgrade.verify_upgrade`. :func:`main` parses the
arguments with argparse (standard library: Thinc alone does not install
typer, and the CLI must work with Thinc alone); with spaCy installed,
:mod:`thinc_losses_plus.spacy_cli` offers the same functions as
``python -m spacy losses ...``.

Output is plain text, safe to pipe: a reader that stops early
(``thinc-losses info NAME | head``) ends the command quietly.

Exit codes: 0 success (``upgrade --check``: nothing to upgrade), 1
``upgrade --check`` found an upgrade, 2 an error (unreadable config, unknown
name, an upgrade that needs ``--truths``, or a result that would not resolve:
nothing is written then).
"""
import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, List, Optional, TextIO

from . import catalog, examples, plaintext, upgrade
from .about import __version__

EXIT_OK, EXIT_UPGRADABLE, EXIT_ERROR = 0, 1, 2
WIDTH = plaintext.WIDTH


def version_text() -> str:
    """``thinc-losses --version``: this package's version, and Thinc's (which decides its built-ins)."""
    try:
        thinc = version("thinc")
    except PackageNotFoundError:  # pragma: no cover - thinc is a dependency
        thinc = "not installed"
    return f"thinc-losses-plus {__version__} (thinc {thinc})"


# Formatting ------------------------------------------------------------------


def format_listing(rows: List[catalog.Listing]) -> str:
    """The ``list`` table: name, provider, and a warning for shadowed names."""
    width = max([len("name")] + [len(r.name) for r in rows])
    pwidth = max([len("provided by")] + [len(r.provider) for r in rows])
    out = [f"{'name':<{width}}  {'provided by':<{pwidth}}  note"]
    names = [r.name for r in rows]
    for row in rows:
        notes = []
        if row.warning:
            notes.append(f"WARNING: {row.warning}")
        if row.name in upgrade.RULES:
            notes.append(f"upgrade: {' or '.join(upgrade.upgrade_targets(row.name))}")
        else:
            newer = catalog.newer_versions(row.name, names)
            if newer:
                notes.append(f"newer: {newer[-1]}")
        out.append(f"{row.name:<{width}}  {row.provider:<{pwidth}}  {'; '.join(notes)}".rstrip())
    shadowed = [r for r in rows if r.shadows]
    out.append("")
    out.append(
        f"{len(rows)} names; "
        + (f"{len(shadowed)} WARNING(S): a plugin shadows another registration" if shadowed else "no name is shadowed")
    )
    return "\n".join(out)


def _gradient_in_description(info: catalog.LossInfo) -> bool:
    """Whether ``info.gradient`` was read from the description's own sentences."""
    if "Gradient" in info.doc.sections:
        return False
    return bool(catalog._sentences_with(info.doc.description, "respect to"))


def format_arguments(arguments: List[catalog.Argument], width: int = WIDTH) -> List[str]:
    """Name, type and default in aligned columns; each description wrapped under its argument."""
    if not arguments:
        return ["  (none)"]
    defaults = ["required" if a.required else catalog.config_value(a.default) for a in arguments]
    nw = max([len("name")] + [len(a.name) for a in arguments])
    tw = max([len("type")] + [len(a.type) for a in arguments])
    out = [f"  {'name':<{nw}}  {'type':<{tw}}  default"]
    for arg, default in zip(arguments, defaults):
        out.append(f"  {arg.name:<{nw}}  {arg.type:<{tw}}  {default}")
        if arg.description:
            text = plaintext.inline(arg.description.replace("\\|", "|"))
            out.append(plaintext.fill(text, width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return out


def format_info(info: catalog.LossInfo, width: int = WIDTH) -> str:
    """The ``info NAME`` text: summary, provider, shapes, gradient, formula, arguments, configs."""
    field = lambda label, value: plaintext.field(label, value, width=width, label_width=12)  # noqa: E731
    out = [info.name]
    if info.doc.summary:
        out += [plaintext.fill(plaintext.inline(info.doc.summary), width)]
    out += ["", field("Provided by", info.provider), field("Factory", info.factory)]
    if info.class_path:
        out.append(field("Calculator", info.class_path))
    if "Shapes" in info.doc.sections:
        out.append(field("Shapes", info.doc.sections["Shapes"]))
    out.append(field("Gradient", info.gradient))
    if info.doc.description:
        drop = (lambda s: "respect to" in s) if _gradient_in_description(info) else None
        prose = plaintext.render(info.doc.description, width=width, drop=drop)
        if prose:
            out += ["", prose]
    out += ["", "Arguments:"] + format_arguments(info.arguments, width)
    targets = upgrade.upgrade_notes(info.name)
    if targets:
        out += [
            "",
            plaintext.fill(
                f"Newer: {' or '.join(sorted(targets))}. thinc-losses upgrade CONFIG rewrites configs "
                f"pinned to {info.name}.",
                width,
            ),
        ]
        for target, notes in sorted(targets.items()):
            out.append(f"Upgrading to {target}:")
            out += [plaintext.fill(note, width, initial_indent="  - ", subsequent_indent="    ") for note in notes]
    if "Config" in info.doc.sections:
        out += ["", "Config example:", info.doc.sections["Config"]]
    out += ["", "Config (every argument at its default):", catalog.config_snippet(info)]
    return "\n".join(out)


def format_examples(found: List[examples.Example], width: int = WIDTH) -> str:
    """``example`` without a name: the shipped examples and what each is for."""
    out: List[str] = []
    for kind, title in (
        ("spacy", "spaCy training configs (python -m spacy train CONFIG --paths.train ... --paths.dev ...):"),
        ("loss", "Loss configs (a [loss] block):"),
    ):
        group = [e for e in found if e.kind == kind]
        if not group:
            continue
        nw = max(len(e.name) for e in group)
        out += ([""] if out else []) + [title]
        for example in group:
            head = f"  {example.name:<{nw}}  "
            summary = example.summary or "-"
            out.append(plaintext.fill(summary, max(width, len(head) + 30), initial_indent=head, subsequent_indent=" " * len(head)))
    out += ["", "thinc-losses example NAME prints one: thinc-losses example NAME > config.cfg"]
    return "\n".join(out)


# Commands: plain functions, shared by argparse (main) and spaCy's CLI --------


def list_command(*, stdout: Optional[TextIO] = None) -> int:
    """``list``: every loss name the registry can resolve, with its provider."""
    print(format_listing(catalog.list_losses()), file=stdout or sys.stdout)
    return EXIT_OK


def info_command(name: str, *, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """``info NAME``: what a registered name takes, computes and returns."""
    try:
        info = catalog.describe(name)
    except KeyError as err:
        print(f"{err.args[0]} (thinc-losses list shows every name.)", file=stderr or sys.stderr)
        return EXIT_ERROR
    print(format_info(info), file=stdout or sys.stdout)
    return EXIT_OK


def example_command(
    name: Optional[str] = None, *, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None
) -> int:
    """``example [NAME]``: print a shipped config (or, without NAME, list them)."""
    stdout = stdout or sys.stdout
    try:
        if name is None:
            print(format_examples(examples.list_examples()), file=stdout)
        else:
            stdout.write(examples.example_text(name))
            if examples.is_spacy_example(name):
                print(
                    "Train with it: python -m spacy train CONFIG --paths.train TRAIN.spacy --paths.dev DEV.spacy "
                    "(its [paths] point to the repository's small corpus)",
                    file=stderr or sys.stderr,
                )
    except BrokenPipeError:
        raise  # the reader left: quiet_on_broken_pipe ends the command
    except (KeyError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) else str(err)
        print(f"{message} (thinc-losses example lists them.)", file=stderr or sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def run_upgrade(
    path: Path,
    *,
    to: str = "latest",
    truths: Optional[str] = None,
    check: bool = False,
    write: bool = False,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
) -> int:
    """``upgrade``: report per reference; print, write or only check the result.

    Without ``--write`` or ``--check`` the upgraded config goes to stdout (the
    report to stderr), so ``thinc-losses upgrade old.cfg > new.cfg`` works.
    Nothing is printed or written when a reference cannot be upgraded or the
    result would not resolve.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if check and write:
        print("Cannot upgrade: --check and --write exclude each other.", file=stderr)
        return EXIT_ERROR
    try:
        text = path.read_text(encoding="utf8")
        result = upgrade.upgrade_config(text, to=to, truths=truths)
    except (OSError, upgrade.UpgradeError) as err:
        print(f"Cannot upgrade {path}: {err}", file=stderr)
        return EXIT_ERROR
    print(f"{path}:\n{result.report()}", file=stderr)
    if check:
        return EXIT_UPGRADABLE if result.upgradable else EXIT_OK
    if result.problems:
        print(f"Nothing written: {len(result.problems)} reference(s) cannot be upgraded as they are.", file=stderr)
        return EXIT_ERROR
    failures = upgrade.verify_upgrade(result)
    if failures:
        for failure in failures:
            print(f"Refusing: {failure}", file=stderr)
        print("Nothing written: the upgraded config would not resolve.", file=stderr)
        return EXIT_ERROR
    if write:
        if result.text != text:
            try:
                path.write_text(result.text, encoding="utf8")
            except OSError as err:
                print(f"Cannot write {path}: {err}", file=stderr)
                return EXIT_ERROR
            print(f"Wrote {path}", file=stderr)
    else:
        stdout.write(result.text)
    return EXIT_OK


def quiet_on_broken_pipe(command: Callable[[], int]) -> int:
    """Run ``command``; if the reader of stdout goes away (``| head``), end quietly.

    Python's own recipe: point stdout at devnull so the interpreter's final
    flush does not raise again, and return success (the reader chose to stop).
    """
    try:
        code = command()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


# argparse ------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thinc-losses",
        description="Loss names in Thinc's registry: list, describe, print example configs, upgrade configs.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="every loss name the registry can resolve, and who provides it")
    info = commands.add_parser("info", help="arguments, gradient convention, formula and a config of a loss")
    info.add_argument("name", metavar="NAME", help='a registered name, e.g. "SparseCategoricalCrossentropy.v4"')
    example = commands.add_parser(
        "example",
        help="print a ready config: a loss name or a spaCy example (without NAME: list them)",
        description="Print a shipped example config to stdout: NAME is a loss name (a [loss] block) or a spaCy "
        "example, e.g. `thinc-losses example textcat_class_weights > config.cfg`. Without NAME, list them.",
    )
    example.add_argument("name", metavar="NAME", nargs="?", default=None, help='e.g. "textcat_class_weights"')
    up = commands.add_parser(
        "upgrade",
        help="rewrite @losses references to their newest versions",
        description="Rewrite @losses references to their newest versions, keeping comments and layout. "
        "Prints the upgraded config to stdout (the report to stderr) unless --write or --check.",
    )
    up.add_argument("config", metavar="CONFIG", type=Path, help="a Thinc or spaCy config file")
    up.add_argument("--to", choices=upgrade.TO_CHOICES, default="latest", help="target versions (default: latest)")
    up.add_argument(
        "--truths",
        choices=upgrade.TRUTHS_CHOICES,
        default=None,
        help="truths of Thinc v1-v3 categorical references whose arguments do not imply them",
    )
    mode = up.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 when an upgrade is available")
    mode.add_argument("--write", action="store_true", help="rewrite CONFIG in place")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    options = make_parser().parse_args(argv)
    if options.command == "list":
        return quiet_on_broken_pipe(list_command)
    if options.command == "info":
        return quiet_on_broken_pipe(lambda: info_command(options.name))
    if options.command == "example":
        return quiet_on_broken_pipe(lambda: example_command(options.name))
    return quiet_on_broken_pipe(
        lambda: run_upgrade(
            options.config, to=options.to, truths=options.truths, check=options.check, write=options.write
        )
    )
