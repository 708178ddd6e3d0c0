"""The server-side apply body is YAML the API server's parser accepts, whatever the spec's strings hold.

e2e/test_fuzz.py found both: emoji (escaped as surrogate pairs by a plain json.dumps) and raw DEL/C1
characters made the API server refuse every child write ("error decoding YAML").
"""

from __future__ import annotations

import json

import pytest
import yaml

from rollguard.adapters.kube import apply_body

STRINGS = [
    "emoji 😀",
    "del \x7f",
    "c1 \x82\x9f",
    "nel \x85",
    "ls \u2028 ps \u2029",
    "bom \ufeff",
    "c0 \x08\x12",
    'quote " \\',
    "ü 中",
]


@pytest.mark.parametrize("text", STRINGS)
def test_apply_body_is_yaml_that_round_trips(text: str) -> None:
    manifest = {"metadata": {"name": "m"}, "spec": {"env": [{"name": "X", "value": text}]}}
    body = apply_body(manifest).decode()
    assert "\\ud8" not in body, f"no surrogate-pair escapes, which YAML refuses: {body}"
    assert yaml.safe_load(body) == manifest, f"a YAML parser reads back what was meant: {body!r}"
    assert json.loads(body) == manifest, f"and it is still JSON: {body!r}"
