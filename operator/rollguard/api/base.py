"""Shared pydantic base for the ModelDeployment API: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

INT32_MAX = 2**31 - 1
"""Integers that reach a child object are int32 there (replicas, ports, maxSkew, deadlines)."""

# Units in Prometheus' order (1h30m, never 30m1h), whole numbers only: every duration is also a valid
# PromQL range. Digit counts keep every value far below what Go, CEL or Python could overflow.
DURATION_PATTERN = r"^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?([0-9]{1,12}ms)?$"
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
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
    if not text or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h30m")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


@dataclass(frozen=True)
class DurationRange:
    """Bounds on a duration, checked by CEL at admission and by the model in the operator alike."""

    minimum: str
    maximum: str

    @property
    def message(self) -> str:
        return (
            f"must be a duration from {self.minimum} to {self.maximum} in whole h, m, s, ms, largest unit first "
            "(e.g. 30s, 5m, 1h30m)"
        )

    def _within(self, text: str) -> str:
        if not duration_seconds(self.minimum) <= duration_seconds(text) <= duration_seconds(self.maximum):
            raise ValueError(f"{text!r} {self.message}")
        return text

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        text = core_schema.str_schema(pattern=DURATION_PATTERN, min_length=2, max_length=40)
        return core_schema.no_info_after_validator_function(self._within, text)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        rule = f"duration(self) >= duration('{self.minimum}') && duration(self) <= duration('{self.maximum}')"
        return {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "minLength": 2,
            "maxLength": 40,
            "x-kubernetes-validations": [{"rule": rule, "message": self.message}],
        }


Duration = Annotated[str, DurationRange("0s", "168h")]
"""A Go-style duration (30s, 5m, 1h30m, 500ms) of at most 7 days."""
