"""The ``parsectl`` command."""

from __future__ import annotations

import os

import typer

from parsectl import __version__
from parsectl.cli import backup, migrate, mongod_conf, provision, serve

app = typer.Typer(
    name="parsectl",
    help="Run Parse apps on your own infrastructure.",
    no_args_is_help=True,
    rich_markup_mode="rich" if not os.environ.get("NO_COLOR") else None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
app.command(name="serve", epilog=serve.EPILOG)(serve.serve)
app.add_typer(migrate.app, name="migrate")
app.add_typer(mongod_conf.app, name="mongod-conf")
app.add_typer(backup.app, name="backup")
app.command(name="provision-node", epilog=provision.EPILOG)(provision.provision_node)
app.add_typer(provision.replset_app, name="replset")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"parsectl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Run Parse apps on your own infrastructure."""
