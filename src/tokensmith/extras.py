"""The optional dependencies and the extra that installs each (pyproject.toml
``[project.optional-dependencies]``), so a missing one is a one-line error naming the extra
(docs/contract.md "CLI")."""

from __future__ import annotations

_EXTRA_OF_MODULE = {
    "psycopg": "postgres",
    "prometheus_client": "metrics",
    "fastapi": "fastapi",
    "pkcs11": "pkcs11",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """``"<module> is not installed: pip install 'tokensmith[<extra>]'"`` when ``exc`` is
    about an optional dependency, else ``None``."""
    module = (exc.name or "").partition(".")[0]
    extra = _EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f"{module} is not installed: pip install 'tokensmith[{extra}]'"
