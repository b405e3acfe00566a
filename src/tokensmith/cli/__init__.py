"""The ``tokensmith`` command: parse, call the facade, render (ARCHITECTURE.md "Layers")."""

from __future__ import annotations

from tokensmith.cli import clients, db, families, keys, logout, serve, tokens
from tokensmith.cli.main import cli, main

__all__ = ["cli", "clients", "db", "families", "keys", "logout", "main", "serve", "tokens"]
