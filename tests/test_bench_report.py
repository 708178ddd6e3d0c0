"""`make bench`'s arithmetic and its table: percentiles, the audit-log count, verdicts against the targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from e2e.bench_probes import AuditLog
from e2e.bench_report import markdown, side_by_side_rows, targets_rows
from e2e.bench_rollguard import percentile


def test_percentile_is_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 50) == 50 and percentile(samples, 95) == 95 and percentile(samples, 99) == 99
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None


def test_audit_log_counts_one_users_requests_and_writes_from_an_offset(tmp_path: Path) -> None:
    def event(user: str, verb: str, resource: str, name: str = "model-1") -> str:
        ref = {"resource": resource, "name": name}
        return json.dumps({"user": {"username": user}, "verb": verb, "objectRef": ref})

    log = tmp_path / "audit.log"
    log.write_text(event("op", "patch", "modeldeployments") + "\n")
    audit = AuditLog(log)
    mark = audit.mark()
    with log.open("a") as f:
        f.write(
            "\n".join(
                [
                    event("op", "get", "pods"),
                    event("op", "create", "deployments", "model-2-abc"),
                    event("admin", "delete", "x"),
                ]
            )
        )
        f.write("\n")
    counts = audit.count("op", mark)
    assert (counts.requests, counts.writes) == (2, 1), counts
    assert counts.writes_by_resource == {"create deployments": 1}
    assert counts.writes_outside(["model-2"]) == 0 and counts.writes_outside(["model-1"]) == 1


def _results(ready: float, writes: int, p95: float, good_rolled_back: int) -> dict[str, Any]:
    idle = {"objects": 1000, "window_seconds": 300.0, "requests": 0, "writes": writes}
    idle |= {"requests_per_object_per_10min": 0.0, "cpu_percent_of_a_core": 0.5, "rss_mib": 200.0}
    return {
        "machine": {"nproc": 2, "loadavg": [1.0, 1.0, 1.0]},
        "rollguard": {
            "by_objects": [
                {
                    "objects": 1000,
                    "seconds_until_all_ready": ready,
                    "rss_mib_after_ready": 200.0,
                    "idle": idle,
                    "spec_change": {"changes": 20, "seconds_p50": 0.1, "seconds_p99": 0.5},
                }
            ],
            "canaries": {
                "canaries": 50,
                "bad": 25,
                "interval_seconds": 3,
                "crossing_to_rejected_seconds_p95": p95,
                "good_rolled_back": good_rolled_back,
                "queries_per_check_due": 3.0,
                "queries_per_check_round": 3,
            },
        },
        "argo": {
            "idle": {**idle, "writes": 0, "cpu_percent_of_a_core": 0.25},
            "outage": {"promoted_during_outage": True},
        },
    }


def test_each_target_row_says_met_or_missed() -> None:
    met = [row[3] for row in targets_rows(_results(ready=60, writes=0, p95=4.0, good_rolled_back=0))]
    assert met[:4] == ["met"] * 4 and met[4] == "-", "no namespace deletion measured: no verdict"
    missed = [row[3] for row in targets_rows(_results(ready=300, writes=7, p95=12.0, good_rolled_back=1))]
    assert missed[:2] == ["**missed**"] * 2 and missed[3] == "**missed**"


def test_side_by_side_prints_rollguard_over_argo_ratios() -> None:
    rows = {row[0].split(" (")[0]: row for row in side_by_side_rows(_results(60, 0, 4.0, 0))}
    assert rows["idle CPU, % of a core"][1:] == ("0.5", "0.25", "2")
    assert rows["idle writes"][3] == "1", "both zero: no worse than Argo"
    assert "| measure | target | measured |" in markdown(_results(60, 0, 4.0, 0))
