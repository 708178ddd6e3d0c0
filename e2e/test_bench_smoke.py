"""`make bench` runs: a tiny run on its own control plane produces numbers and writes them.

Only that the measurements exist is asserted, never how fast anything was (no timed assertions):
the targets are judged by `make bench` and recorded in the README, on a machine described there.
"""

from __future__ import annotations

import json
from pathlib import Path

from e2e import bench
from e2e.bench_rollguard import OPERATOR_USER


def test_a_tiny_bench_counts_the_operator_at_the_api_server_and_writes_json_table_and_plot(tmp_path: Path) -> None:
    args = bench.parser().parse_args(
        ["--objects", "3", "--idle-minutes", "0.1", "--spec-changes", "1", "--canaries", "0", "--delete", "2"]
    )
    bench.run(args, tmp_path / "results", tmp_path / "state")

    results = json.loads((tmp_path / "results" / "bench.json").read_text())
    point = results["rollguard"]["by_objects"][0]
    assert point["objects"] == 3 and point["seconds_until_all_ready"] > 0, point
    # The operator's own writes (children, status) are attributed to its identity by the audit log.
    assert point["writes_while_creating"] > 0, f"no writes by {OPERATOR_USER} in the audit log: {point}"
    idle = point["idle"]
    assert {"requests", "writes", "cpu_percent_of_a_core", "rss_mib"} <= idle.keys() and idle["rss_mib"] > 0, idle
    assert point["spec_change"]["changes"] == 1 and point["spec_change"]["seconds_p50"] is not None
    deleted = results["rollguard"]["delete_namespace"]
    assert deleted["gone_within_deadline"] and isinstance(deleted["operator_error_lines"], int), deleted
    assert results["machine"]["nproc"] >= 1 and len(results["machine_after"]["loadavg"]) == 3

    table = (tmp_path / "results" / "bench.md").read_text()
    assert "| measure | target | measured |" in table and "created at once" in table, table
    assert (tmp_path / "results" / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "a PNG plot"
