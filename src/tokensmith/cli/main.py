"""Command group, shared options, and the one-line error contract.

Every command exits non-zero with a single ``error: ...`` line on bad input, never a
traceback (docs/contract.md "CLI").
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tokensmith.errors import ConfigError, TokensmithError
from tokensmith.facade import Tokensmith
from tokensmith.settings import Settings


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            raise click.ClickException(_one_line(exc)) from None


def _one_line(exc: Exception) -> str:
    """The error line for ``exc`` (docs/contract.md "CLI"): never a traceback."""
    if _missing_tables(exc):
        return "the database has no tokensmith tables: run `tokensmith db upgrade`"
    if isinstance(exc, ConfigError):
        # The operator's settings, not a server fault: no OAuth code (issue #13).
        return exc.description
    if isinstance(exc, TokensmithError):
        return f"{exc.error}: {exc.description}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}"
    # A database that is down, a driver error: only the first line of the message;
    # drivers append hints and URLs.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]}"


def _missing_tables(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an error behind it is SQLite's ``no such table`` or PostgreSQL's
    ``undefined_table`` (SQLSTATE 42P01): a database that was never migrated."""
    while exc is not None:
        if "no such table" in str(exc) or getattr(exc, "sqlstate", None) == "42P01":
            return True
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "orig", None)
    return False


@click.group(cls=_Group)
@click.option("--issuer", envvar="TOKENSMITH_ISSUER", help="Issuer URL (iss).")
@click.option("--database-url", envvar="TOKENSMITH_DATABASE_URL", help="SQLAlchemy URL.")
@click.option("--keys-dir", envvar="TOKENSMITH_KEYS_DIR", help="Directory of the key store.")
@click.pass_context
def cli(
    ctx: click.Context, issuer: str | None, database_url: str | None, keys_dir: str | None
) -> None:
    """tokensmith: JWT issuance, key rotation and refresh-token rotation.

    Settings come from TOKENSMITH_* environment variables; the options override them."""
    overrides: dict[str, object] = {
        k: v
        for k, v in (("issuer", issuer), ("database_url", database_url), ("keys_dir", keys_dir))
        if v is not None
    }
    ctx.obj = _Lazy(overrides)


class _Lazy:
    """Builds settings and the facade only when a command needs them, so ``--help`` works
    with a broken environment."""

    def __init__(self, overrides: dict[str, object]) -> None:
        self.overrides = overrides
        self._ts: Tokensmith | None = None

    @property
    def settings(self) -> Settings:
        return self.ts.settings

    @property
    def ts(self) -> Tokensmith:
        if self._ts is None:
            self._ts = Tokensmith(Settings.from_env(None, **self.overrides))
        return self._ts


def settings_overrides(ctx: click.Context) -> dict[str, object]:
    """The settings given as options (the group's, and a command's before it calls
    :func:`facade`), by field name."""
    lazy: _Lazy = ctx.ensure_object(_Lazy)
    return lazy.overrides


def facade(ctx: click.Context) -> Tokensmith:
    lazy: _Lazy = ctx.ensure_object(_Lazy)
    return lazy.ts


# A token is at most a few KiB (Settings.max_token_bytes); read no further than this.
_MAX_STDIN = 64 * 1024


def token_value(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Click callback for a token parameter: ``-`` reads one token from standard input, so
    it need not appear in the process list or the shell history."""
    if value != "-":
        return value
    text = click.get_text_stream("stdin").read(_MAX_STDIN + 1)
    if len(text) > _MAX_STDIN:
        raise click.ClickException("standard input is too long for a token")
    tokens = text.split()
    if len(tokens) != 1:
        raise click.ClickException(
            f"standard input must hold exactly one token, found {len(tokens)}"
        )
    return tokens[0]


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="tokensmith", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        click.echo("error: interrupted", err=True)
        sys.exit(130)
