"""The README's Python snippets run as written (in a scratch directory)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from .conftest import cli_env

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert _python_blocks()


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_block_runs(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_blocks()[index], f"README block {index}", "exec"), {})
    assert "Traceback" not in capsys.readouterr().err


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
    for args in commands:
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, (args, result.output)
