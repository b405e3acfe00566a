"""The ``tokensmith`` command: parse, call the facade, render (STYLE "Thin edges")."""

from __future__ import annotations

from tokensmith.cli.main import main

__all__ = ["main"]
