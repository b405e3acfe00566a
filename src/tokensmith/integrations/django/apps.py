"""The Django app: drops the cached guard when a test changes ``settings.TOKENSMITH``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.test.signals import setting_changed


class TokensmithConfig(AppConfig):
    name = "tokensmith.integrations.django"
    label = "tokensmith"
    verbose_name = "tokensmith"

    def ready(self) -> None:
        setting_changed.connect(_reset, dispatch_uid="tokensmith-settings")


def _reset(*, setting: str, **_kwargs: Any) -> None:
    from tokensmith.integrations.django import conf

    if setting == "TOKENSMITH":
        conf.reset()
