"""Per-object back-off: an object whose pass failed, or whose child the API server refused, waits
before it is tried again, unless it changes (new generation, uid or action annotation)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]


def fingerprint(body: dict[str, Any]) -> str:
    """What a user changes to ask for another try: the spec (generation), the object (uid), annotations."""
    meta = body.get("metadata") or {}
    raw = json.dumps([meta.get("uid"), meta.get("generation"), meta.get("annotations") or {}], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass
class Hold:
    fingerprint: str
    failures: int
    until: float
    delay_seconds: float


@dataclass
class Holds:
    """Exponential back-off per object (base doubling up to cap), forgotten when the object changes."""

    base_seconds: float = 5.0
    cap_seconds: float = 300.0
    holds: dict[Key, Hold] = field(default_factory=dict)

    def holding(self, key: Key, fingerprint: str, now: float) -> bool:
        hold = self.holds.get(key)
        return hold is not None and hold.fingerprint == fingerprint and now < hold.until

    def fail(self, key: Key, fingerprint: str, now: float) -> Hold:
        previous = self.holds.get(key)
        failures = previous.failures + 1 if previous and previous.fingerprint == fingerprint else 1
        delay = min(self.cap_seconds, self.base_seconds * 2 ** (failures - 1))
        self.holds[key] = hold = Hold(fingerprint, failures, now + delay, delay)
        return hold

    def clear(self, key: Key) -> bool:
        return self.holds.pop(key, None) is not None
