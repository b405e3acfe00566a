"""tokensmith: JWT issuance, key rotation and refresh-token rotation for SPAs and APIs."""

from __future__ import annotations

__version__ = "0.1.0"
