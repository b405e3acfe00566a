"""Command group, shared options, and the one-line error contract.

Every command exits non-zero with a single ``error: ...`` line on bad input, never a
traceback (docs/contract.md "CLI").
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tokensmith import __version__
from tokensmith.errors import KeyStoreError, one_line
from tokensmith.extras import missing_extra
from tokensmith.facade import Tokensmith
from tokensmith.settings import Settings


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except ModuleNotFoundError as exc:
            # e.g. a postgresql+psycopg:// URL on an install without tokensmith[postgres].
            hint = missing_extra(exc)
            if hint is None:
                raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
            raise click.ClickException(hint) from None
        except OSError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        except KeyStoreError as exc:
            raise click.ClickException(_key_store_hint(ctx, exc) or one_line(exc)) from None
        except Exception as exc:
            raise click.ClickException(one_line(exc)) from None


def _key_store_hint(ctx: click.Context, exc: KeyStoreError) -> str | None:
    """No active key in the file store, on a database that holds the SQL key store's keys:
    the operator forgot ``TOKENSMITH_KEY_STORE=sql``, and ``keys generate`` would be wrong
    advice (it would start a second, unpublished set of keys)."""
    lazy = ctx.obj
    if "no active" not in exc.description or not isinstance(lazy, _Lazy):
        return None
    try:
        if not lazy.ts.keys_in_database():
            return None
    except Exception:
        return None  # the hint is a courtesy: the original error still stands
    return (
        "no active signing key in the keys directory, but this database holds the SQL key "
        "store's keys: set TOKENSMITH_KEY_STORE=sql (and TOKENSMITH_KEY_PASSPHRASE)"
    )


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="tokensmith", message="%(prog)s %(version)s")
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
