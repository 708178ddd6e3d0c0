"""The two pure helpers that keep an unchanged ModelDeployment free of API writes."""

from __future__ import annotations

from typing import Any

import pytest

from rollguard.adapters.kube import contains
from rollguard.reconciler import merge_patch


@pytest.mark.parametrize(
    ("live", "desired", "expected"),
    [
        ({"a": 1, "defaulted": "x"}, {"a": 1}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2]}}, True),
        ({"a": {"b": [1, 2, 3]}}, {"a": {"b": [1, 2]}}, False),
        ({"spec": {"replicas": 3}}, {"spec": {"replicas": 3.0}}, True),
        ({"spec": {}}, {"spec": {"replicas": 3}}, False),
        ({"flag": 1}, {"flag": True}, False),
        ([{"name": "a", "extra": 1}], [{"name": "a"}], True),
    ],
)
def test_contains_means_every_desired_field_is_live(live: Any, desired: Any, expected: bool) -> None:
    assert contains(live, desired) is expected, f"contains({live}, {desired}) should be {expected}"


def test_merge_patch_is_none_when_nothing_changed() -> None:
    status = {"phase": "Ready", "rollout": None, "conditions": [{"type": "Ready"}]}
    assert merge_patch(status, dict(status)) is None, "no patch, so no API write, when status is unchanged"


def test_merge_patch_nulls_removed_keys_at_any_depth() -> None:
    old = {"phase": "Progressing", "rollout": {"stepIndex": 1, "pausedReason": "MetricsUnavailable"}, "x": 1}
    new = {"phase": "Progressing", "rollout": {"stepIndex": 1}}
    assert merge_patch(old, new) == {"rollout": {"pausedReason": None}, "x": None}


def test_merge_patch_replaces_lists_whole() -> None:
    assert merge_patch({"history": [1, 2]}, {"history": [1, 2, 3]}) == {"history": [1, 2, 3]}


def test_merge_patch_applied_gives_the_new_status() -> None:
    old = {"a": {"b": 1, "c": 2}, "d": [1], "e": "x"}
    new = {"a": {"b": 1, "f": 3}, "d": [2], "g": {"h": 1}}
    patch = merge_patch(old, new)

    def apply(target: Any, change: Any) -> Any:
        if not isinstance(change, dict):
            return change
        result = dict(target) if isinstance(target, dict) else {}
        for key, value in change.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = apply(result.get(key), value)
        return result

    assert apply(old, patch) == new, "RFC 7386: applying the patch to the old status yields the new one"
