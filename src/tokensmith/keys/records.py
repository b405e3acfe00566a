"""Key lifecycle records: pending → active → retired → removed (docs/contract.md "Keys")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

KeyState = Literal["pending", "active", "retired"]
STATES: tuple[KeyState, ...] = ("pending", "active", "retired")


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    alg: str
    state: KeyState
    created_at: float
    activated_at: float | None = None
    retired_at: float | None = None

    def activate(self, now: float) -> KeyRecord:
        return replace(self, state="active", activated_at=now)

    def retire(self, now: float) -> KeyRecord:
        return replace(self, state="retired", retired_at=now)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRecord:
        state = data["state"]
        if state not in STATES:
            raise ValueError(f"unknown key state {state!r}")
        return cls(
            kid=str(data["kid"]),
            alg=str(data["alg"]),
            state=state,
            created_at=float(data["created_at"]),
            activated_at=_opt_float(data.get("activated_at")),
            retired_at=_opt_float(data.get("retired_at")),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
