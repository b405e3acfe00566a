"""A fresh SoftHSM2 token in a directory of its own, for the PKCS#11 key store's tests and
``benchmarks/bench_tokens.py``. SoftHSM2 is Debian's ``softhsm2`` (``.ci/run`` installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
PIN = "4201-tokensmith"
SO_PIN = "9907-security-officer"


@dataclass(frozen=True)
class SoftHsmToken:
    module: str
    label: str
    pin: str
    conf: Path

    def env(self) -> dict[str, str]:
        """The variables that select this token as the key store (``PIN`` included)."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "TOKENSMITH_KEY_STORE": "pkcs11",
            "TOKENSMITH_PKCS11_MODULE": self.module,
            "TOKENSMITH_PKCS11_TOKEN_LABEL": self.label,
            "TOKENSMITH_PKCS11_PIN": self.pin,
        }


def softhsm_module() -> str | None:
    """The SoftHSM2 PKCS#11 library, or None when softhsm2 is not installed."""
    if shutil.which("softhsm2-util") is None:
        return None
    return next((path for path in MODULE_PATHS if Path(path).is_file()), None)


def init_token(directory: Path, label: str, module: str) -> SoftHsmToken:
    """Initialise a token in ``directory`` and point this process's SoftHSM2 at it.

    SoftHSM2 reads ``SOFTHSM2_CONF`` in ``C_Initialize`` only, so a process that loaded the
    library already re-initialises it (objects and sessions of an earlier token die)."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    command = ["softhsm2-util", "--init-token", "--free", "--label", label]
    subprocess.run(
        [*command, "--pin", PIN, "--so-pin", SO_PIN],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    import pkcs11

    pkcs11.lib(module).reinitialize()
    return SoftHsmToken(module, label, PIN, conf)
