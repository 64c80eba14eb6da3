"""``thinc-losses`` / ``python -m thinc_losses_plus``: a thin command line.

Each command formats what a plain, tested function returns:
``list`` -> :func:`thinc_losses_plus.catalog.list_losses`, ``info`` ->
:func:`thinc_losses_plus.catalog.describe`, ``upgrade`` ->
:func:`thinc_losses_plus.upgrade.upgrade_config` and
:func:`~thinc_losses_plus.upgrade.verify_upgrade`. argparse (standard library)
rather than typer: Thinc alone does not install typer, and the CLI must work
with Thinc alone.

Exit codes: 0 success (``upgrade --check``: nothing to upgrade), 1
``upgrade --check`` found an upgrade, 2 an error (unreadable config, unknown
name, an upgrade that needs ``--truths``, or a result that would not resolve:
nothing is written then).
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, TextIO

from . import catalog, upgrade

EXIT_OK, EXIT_UPGRADABLE, EXIT_ERROR = 0, 1, 2


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


def format_info(info: catalog.LossInfo) -> str:
    """The ``info NAME`` text: arguments, gradient convention, formula, config."""
    out = [f"{info.name}  (provided by {info.provider}; factory {info.factory})"]
    if info.class_path:
        out.append(f"calculator: {info.class_path}")
    if info.doc.summary:
        out += ["", info.doc.summary]
    if "Shapes" in info.doc.sections:
        out += ["", "Shapes: " + " ".join(info.doc.sections["Shapes"].split())]
    if info.doc.description:
        out += ["", info.doc.description]
    out += ["", "Gradient: " + " ".join(info.gradient.split())]
    out += ["", "Arguments:"]
    width = max([0] + [len(a.name) for a in info.arguments])
    twidth = max([0] + [len(a.type) for a in info.arguments])
    for arg in info.arguments:
        default = "(required)" if arg.required else f"= {catalog.config_value(arg.default)}"
        line = f"  {arg.name:<{width}}  {arg.type:<{twidth}}  {default}"
        out.append(f"{line}  {arg.description}".rstrip() if arg.description else line)
    if not info.arguments:
        out.append("  (none)")
    targets = upgrade.upgrade_notes(info.name)
    if targets:
        out += ["", f"Newer: {' or '.join(sorted(targets))}; `thinc-losses upgrade CONFIG` rewrites configs pinned to {info.name}."]
        for target, notes in sorted(targets.items()):
            out.append(f"Upgrading to {target}:")
            out += [f"  - {note}" for note in notes]
    if "Config" in info.doc.sections:
        out += ["", "Config example:", info.doc.sections["Config"]]
    out += ["", "Config:", catalog.config_snippet(info)]
    return "\n".join(out)


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
            path.write_text(result.text, encoding="utf8")
            print(f"Wrote {path}", file=stderr)
    else:
        stdout.write(result.text)
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thinc-losses", description="Loss names in Thinc's registry: list, describe, upgrade configs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="every loss name the registry can resolve, and who provides it")
    info = commands.add_parser("info", help="arguments, gradient convention, formula and a config of a loss")
    info.add_argument("name", metavar="NAME", help='a registered name, e.g. "SparseCategoricalCrossentropy.v4"')
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
        print(format_listing(catalog.list_losses()))
        return EXIT_OK
    if options.command == "info":
        try:
            info = catalog.describe(options.name)
        except KeyError as err:
            print(err.args[0], file=sys.stderr)
            return EXIT_ERROR
        print(format_info(info))
        return EXIT_OK
    return run_upgrade(
        options.config, to=options.to, truths=options.truths, check=options.check, write=options.write
    )
