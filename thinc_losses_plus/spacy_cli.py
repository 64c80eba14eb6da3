"""``python -m spacy losses list|info|upgrade|example``: the same commands in spaCy's CLI.

spaCy loads the ``spacy_cli`` entry points when its CLI starts
(``registry.cli.get_all()`` in ``spacy.cli.setup_cli``), as it does for
spacy-huggingface-hub's ``huggingface-hub`` group. This package's entry point
names this module, whose import adds a ``losses`` group to spaCy's typer app.
Each command is a thin typer wrapper over the plain function of
:mod:`thinc_losses_plus.cli` that ``thinc-losses`` runs, so both give the same
output and exit codes. Only spaCy imports this module: without spaCy it is
never loaded, and ``thinc-losses`` needs neither spaCy nor typer.
"""
from pathlib import Path
from typing import Optional

import typer
from spacy.cli._util import app

from . import cli
from .upgrade import TO_CHOICES, TRUTHS_CHOICES

losses_cli = typer.Typer(
    name="losses",
    help="Loss names in Thinc's registry (thinc-losses-plus): list, describe, print example configs, upgrade configs.",
    no_args_is_help=True,
)
app.add_typer(losses_cli)


def _exit(code: int) -> None:
    raise typer.Exit(code)


@losses_cli.command("list")
def losses_list_cli() -> None:
    """Every loss name the registry can resolve, and who provides it."""
    _exit(cli.quiet_on_broken_pipe(cli.list_command))


@losses_cli.command("info")
def losses_info_cli(
    name: str = typer.Argument(..., help='A registered name, e.g. "SparseCategoricalCrossentropy.v4"'),
) -> None:
    """Arguments, gradient convention, formula and a config of a loss."""
    _exit(cli.quiet_on_broken_pipe(lambda: cli.info_command(name)))


@losses_cli.command("example")
def losses_example_cli(
    name: Optional[str] = typer.Argument(None, help='A loss name or a spaCy example, e.g. "textcat_class_weights"'),
) -> None:
    """Print a ready config: a loss name or a spaCy example (without NAME: list them)."""
    _exit(cli.quiet_on_broken_pipe(lambda: cli.example_command(name)))


@losses_cli.command("upgrade")
def losses_upgrade_cli(
    config: Path = typer.Argument(..., help="A Thinc or spaCy config file"),
    to: str = typer.Option("latest", "--to", help=f"Target versions: {', '.join(TO_CHOICES)}"),
    truths: Optional[str] = typer.Option(
        None, "--truths", help=f"{' or '.join(TRUTHS_CHOICES)}: truths of Thinc v1-v3 categorical references whose arguments do not imply them"
    ),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when an upgrade is available"),
    write: bool = typer.Option(False, "--write", help="Rewrite CONFIG in place"),
) -> None:
    """Rewrite @losses references to their newest versions, keeping comments and layout."""
    _exit(cli.quiet_on_broken_pipe(lambda: cli.run_upgrade(config, to=to, truths=truths, check=check, write=write)))
