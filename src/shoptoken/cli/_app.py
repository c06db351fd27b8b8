"""The ``shoptoken`` command group: global options, one-line errors, the subcommands."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ._demo import demo
from ._fake import fake_shopify
from ._logging import configure_console
from ._migrate import migrate
from ._options import shared_options
from ._run import run
from ._status import status
from ._tokens import forget, refresh

if TYPE_CHECKING:
    from collections.abc import Iterator

_HELP_ERRORS = tuple(
    kind for kind in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if kind is not None
)


@contextmanager
def _one_line_usage_errors(ctx: click.Context) -> Iterator[None]:
    """Show usage errors as one ``Error:`` line, with the help hint on it, not a usage block."""
    try:
        yield
    except click.UsageError as exc:
        if isinstance(exc, _HELP_ERRORS) or exc.ctx is None:
            raise  # help to show, or already one line
        path = (exc.ctx or ctx).command_path
        # Without a context click prints no usage block: just "Error: ...".
        raise click.UsageError(f"{exc.format_message()} (see '{path} --help')") from None


class _Group(click.Group):
    """A group whose usage errors, and its commands', are one line long."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _one_line_usage_errors(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage_errors(ctx):
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="shoptoken")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log the manager's events on stderr (-v: info, -vv: debug). `run` logs JSON anyway.",
)
@shared_options
def cli(verbose: int, **_shared: str | None) -> None:
    """Keep Shopify OAuth tokens valid: inspect, refresh, migrate and keep them fresh.

    Every command reads the store from --store or SHOPTOKEN_STORE (default
    sqlite:///shoptoken.db in the current directory) and the app's
    credentials from SHOPTOKEN_CLIENT_ID and SHOPTOKEN_CLIENT_SECRET. The
    shared options may come before the command or after it. No command
    prints an access or refresh token.

    Start with `shoptoken demo`.
    """
    configure_console(verbose)


for _command in (demo, status, run, refresh, forget, migrate, fake_shopify):
    cli.add_command(_command)


def main() -> None:
    """Run the ``shoptoken`` command (the console script's entry point)."""
    cli(prog_name="shoptoken")
