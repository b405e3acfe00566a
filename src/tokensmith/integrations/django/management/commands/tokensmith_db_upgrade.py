"""``manage.py tokensmith_db_upgrade``: ``tokensmith db upgrade`` for the issuer's database
named by ``settings.TOKENSMITH["SETTINGS"]`` (and the ``TOKENSMITH_*`` environment)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tokensmith.errors import one_line
from tokensmith.facade import Tokensmith
from tokensmith.integrations.django import conf


class Command(BaseCommand):
    help = "Apply every pending tokensmith migration (safe to run repeatedly)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            Tokensmith(conf.tokensmith_settings()).migrate()
        except Exception as exc:
            raise CommandError(f"tokensmith: {one_line(exc)}") from None
        self.stdout.write("tokensmith: database is up to date")
