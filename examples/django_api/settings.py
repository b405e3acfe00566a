"""Settings of the example API: DRF with tokensmith's bearer authentication, no database
of its own (the principal is the token, not a Django user).

``settings.TOKENSMITH`` has no ``JWKS_URL``, so the guard verifies with a local
``Tokensmith`` configured by the ``TOKENSMITH_*`` environment, revocation included.
"""

from __future__ import annotations

import os
import secrets

# Django signs nothing this API relies on; a fresh key per process is enough here.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["rest_framework", "tokensmith.integrations.django"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "examples.django_api.urls"
DATABASES: dict[str, object] = {}
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tokensmith.integrations.django.authentication.BearerTokenAuthentication"
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # No django.contrib.auth: an unauthenticated request has no user at all.
    "UNAUTHENTICATED_USER": None,
}

TOKENSMITH = {"AUDIENCE": "example-api", "REALM": "example-api"}
