"""Shared pydantic base for the ModelDeployment API: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class WireModel(BaseModel):
    """Accepts camelCase (the manifest) and snake_case (Python), ignores nothing silently."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class StatusModel(BaseModel):
    """Status parts: written by the operator; tolerant of fields from newer operator versions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def duration_seconds(text: str) -> float:
    """'1m30s' -> 90.0. The API schema guarantees the format; this raises ValueError otherwise."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h30m")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
"""A Go-style duration: 30s, 5m, 1h30m, 500ms."""
