"""The README's Python snippets run as written (in a scratch directory)."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest

from .conftest import cli_env

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert _python_blocks()


def _run_python_block(index: int) -> None:
    exec(compile(_python_blocks()[index], f"README block {index}", "exec"), {})


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_block_runs(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _run_python_block(index)
    assert "Traceback" not in capsys.readouterr().err


def test_readme_python_blocks_run_twice_in_one_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader who runs the snippets again (same database, same keys) sees them work."""
    monkeypatch.chdir(tmp_path)
    for round_ in range(2):
        if round_:
            # The quick start ends with revoke_subject("alice"), which refuses her tokens
            # issued up to that second (`iat` is whole seconds): a person re-running it
            # is never that quick.
            time.sleep(1.05 - time.time() % 1)
        for index in range(len(_python_blocks())):
            _run_python_block(index)


def _shell_commands(block_marker: str) -> list[list[str]]:
    """The ``tokensmith ...`` lines of the README's shell block that contains the marker."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text("utf-8"), flags=re.S)
    block = next(b for b in blocks if block_marker in b)
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("tokensmith ")]


def test_readme_client_commands_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tokensmith.cli import cli

    env = cli_env(tmp_path, issuer="https://auth.example.com")
    assert CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    commands = _shell_commands("tokensmith clients add backend")
    assert {args[1] for args in commands} == {
        "add",
        "list",
        "update",
        "rotate-secret",
        "disable",
        "enable",
        "delete",
    }
    for args in commands + commands:  # twice: the block runs again as written
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, (args, result.output)
