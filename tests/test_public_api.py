"""The public surface: one import line, a sorted and complete ``__all__``, one error tree."""

from __future__ import annotations

import inspect

import pytest

import tokensmith
from tokensmith import errors


def test_all_is_sorted_and_unique() -> None:
    assert list(tokensmith.__all__) == sorted(set(tokensmith.__all__))


# Loaded on first use (they need httpx and Starlette, which ``import tokensmith`` does not load).
LAZY = {"RemoteRevocations"}


def test_all_names_every_public_export() -> None:
    public = {
        name
        for name, value in vars(tokensmith).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert (public - LAZY) | LAZY | {"__version__"} == set(tokensmith.__all__)
    assert all(inspect.isclass(getattr(tokensmith, name)) for name in LAZY)


def test_every_error_class_is_exported_and_under_one_root() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    for cls in classes:
        assert issubclass(cls, errors.TokensmithError)
        assert cls.__name__ in tokensmith.__all__


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [
        (errors.InvalidToken, "invalid_token", 401),
        (errors.TokenExpired, "invalid_token", 401),
        (errors.InvalidGrant, "invalid_grant", 400),
        (errors.RefreshTokenReused, "invalid_grant", 400),
        (errors.InvalidClient, "invalid_client", 401),
        (errors.InvalidScope, "invalid_scope", 400),
        (errors.InvalidRequest, "invalid_request", 400),
        (errors.TemporarilyUnavailable, "temporarily_unavailable", 503),
        (errors.ConfigError, "server_error", 500),
    ],
)
def test_errors_carry_their_oauth_code_and_http_status(
    cls: type[errors.TokensmithError], code: str, status: int
) -> None:
    assert (cls.error, cls.status_code) == (code, status)


def test_reuse_is_an_invalid_grant() -> None:
    assert issubclass(errors.RefreshTokenReused, errors.InvalidGrant)
    assert issubclass(errors.TokenExpired, errors.InvalidToken)


def test_the_cli_prints_the_package_version() -> None:
    from click.testing import CliRunner

    from tokensmith.cli import cli

    result = CliRunner().invoke(cli, ["--version"])
    assert (result.exit_code, result.output) == (0, f"tokensmith {tokensmith.__version__}\n")
