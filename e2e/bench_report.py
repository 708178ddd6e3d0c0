"""`make bench` results as a Markdown table (issue 10's Targets, measured) and a PNG plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value}{unit}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def _le(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value <= limit)


def targets_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, target, measured, verdict) for each row of issue 10's Targets table."""
    rg = results.get("rollguard") or {}
    points = rg.get("by_objects") or []
    top = points[-1] if points else {}
    n = top.get("objects")
    idle = top.get("idle") or {}
    change = top.get("spec_change") or {}
    can = rg.get("canaries") or {}
    dele = rg.get("delete_namespace") or {}
    interval = can.get("interval_seconds", 3)
    ready_ok = (
        None if not top else _le(top.get("seconds_until_all_ready"), 120) and _le(top.get("rss_mib_after_ready"), 250)
    )
    idle_ok = (
        None
        if not idle
        else (idle["writes"] == 0 and idle["requests_per_object_per_10min"] <= 1 and idle["cpu_percent_of_a_core"] <= 2)
    )
    qpc = can.get("queries_per_check_due")
    canary_ok = (
        None
        if not can
        else bool(
            _le(can.get("crossing_to_rejected_seconds_p95"), interval + 2)
            and can.get("good_rolled_back") == 0
            and qpc is not None
            and 0.8 <= qpc / can.get("queries_per_check_round", 1) <= 1.25
        )
    )
    return [
        (
            f"{n} created at once (replicas 1, Canary, one check)",
            "all Ready ≤ 120 s; RSS ≤ 250 MiB",
            f"{_fmt(top.get('seconds_until_all_ready'), ' s')}; {_fmt(top.get('rss_mib_after_ready'), ' MiB')}",
            _verdict(ready_ok),
        ),
        (
            f"idle, {n} objects, {_fmt(idle.get('window_seconds'), ' s')}{_settled(top)}",
            "0 writes; ≤ 1 request/object/10 min; CPU ≤ 2 %",
            f"{_fmt(idle.get('writes'))} writes ({_fmt(idle.get('writes_to_unchanged_objects'))} to unchanged objects);"
            f" {_fmt(idle.get('requests_per_object_per_10min'))} req/obj/10 min;"
            f" {_fmt(idle.get('cpu_percent_of_a_core'), ' %')}",
            _verdict(idle_ok),
        ),
        (
            f"spec change → new canary Deployment, {n} idle",
            "p99 < 1 s",
            f"p50 {_fmt(change.get('seconds_p50'), ' s')}, p99 {_fmt(change.get('seconds_p99'), ' s')}"
            f" ({_fmt(change.get('changes'))} changes)",
            _verdict(None if change.get("seconds_p99") is None else change["seconds_p99"] < 1),
        ),
        (
            f"{_fmt(can.get('canaries'))} canaries ({_fmt(can.get('bad'))} bad, interval {interval} s) among {n}",
            f"crossing → rejected p95 ≤ {interval + 2} s; 0 good rolled back; queries/s = checks due/s",
            f"p50 {_fmt(can.get('crossing_to_rejected_seconds_p50'), ' s')}, p95"
            f" {_fmt(can.get('crossing_to_rejected_seconds_p95'), ' s')}; {_fmt(can.get('good_rolled_back'))} good"
            f" rolled back; {_fmt(can.get('prometheus_queries_per_second'))} queries/s vs"
            f" {_fmt(can.get('checks_due_per_second'))} checks due/s"
            f" ({_fmt(can.get('queries_per_check_round'))} queries a round)",
            _verdict(canary_ok),
        ),
        (
            f"delete a namespace with {_fmt(dele.get('model_deployments'))} ModelDeployments",
            "gone ≤ 30 s; no error lines",
            f"{_fmt(dele.get('seconds_until_gone'), ' s')}; {_fmt(dele.get('operator_error_lines'))} error lines",
            _verdict(
                None
                if not dele
                else bool(_le(dele.get("seconds_until_gone"), 30) and dele.get("operator_error_lines") == 0)
            ),
        ),
    ]


def side_by_side_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, rollguard, Argo, rollguard/Argo) for the idle, rollback and outage scenarios."""
    rg, argo = results.get("rollguard") or {}, results.get("argo") or {}
    if not argo:
        return []
    points = rg.get("by_objects") or []
    rg_idle = (points[-1] if points else {}).get("idle") or {}
    argo_idle = argo.get("idle") or {}

    def ratio(a: Any, b: Any) -> str:
        if a is None or b is None:
            return "-"
        return "∞" if b == 0 and a > 0 else ("1" if b == 0 else f"{a / b:.2g}")

    rows = []
    for label, key in (
        ("idle requests / 10 min / object", "requests_per_object_per_10min"),
        ("idle writes", "writes"),
        ("idle CPU, % of a core", "cpu_percent_of_a_core"),
        ("RSS, MiB", "rss_mib"),
    ):
        a, b = rg_idle.get(key), argo_idle.get(key)
        rows.append(
            (f"{label} ({rg_idle.get('objects')} / {argo_idle.get('objects')} objects)", _fmt(a), _fmt(b), ratio(a, b))
        )
    a = _get(rg, "canaries", "crossing_to_rejected_seconds_p50")
    b = _get(argo, "rollback", "crossing_to_aborted_seconds_p50")
    rows.append(("rollback: crossing → rejected/aborted p50, s", _fmt(a), _fmt(b), ratio(a, b)))
    a = _get(rg, "canaries", "crossing_to_rejected_seconds_p95")
    b = _get(argo, "rollback", "crossing_to_aborted_seconds_p95")
    rows.append(("rollback: p95, s", _fmt(a), _fmt(b), ratio(a, b)))
    a = _get(rg, "canaries", "pod_ready_to_rejected_seconds_p50")
    b = _get(argo, "rollback", "pod_ready_to_aborted_seconds_p50")
    rows.append(("rollback: canary pod Ready → rejected/aborted p50, s", _fmt(a), _fmt(b), ratio(a, b)))
    rows.append(
        (
            f"promoted during a {_fmt(_get(argo, 'outage', 'outage_seconds'))} s Prometheus outage",
            _fmt(_get(rg, "outage", "promoted_during_outage")),
            _fmt(_get(argo, "outage", "promoted_during_outage")),
            "",
        )
    )
    return rows


def sweep_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for p in (results.get("rollguard") or {}).get("by_objects") or []:
        idle, change = p.get("idle") or {}, p.get("spec_change") or {}
        rows.append(
            (
                str(p["objects"]),
                _fmt(p.get("seconds_until_all_ready")),
                _fmt(p.get("rss_mib_after_ready")),
                _fmt(idle.get("requests")),
                _fmt(idle.get("writes")),
                _fmt(idle.get("requests_per_object_per_10min")),
                _fmt(idle.get("cpu_percent_of_a_core")),
                _fmt(change.get("seconds_p50")),
                _fmt(change.get("seconds_p99")),
            )
        )
    return rows


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _settled(point: dict[str, Any]) -> str:
    tail = point.get("settle")
    if not tail:
        return ""
    quiet = "" if tail.get("settled") else ", never quiet"
    since = _fmt(tail.get("seconds_until_quiet"), " s")
    return f" (from {since} after all Ready{quiet}: {_fmt(tail.get('writes'))} writes before)"


def _kcm(results: dict[str, Any]) -> str:
    qps = (results.get("arguments") or {}).get("kcm_qps")
    return f"{qps} requests/s (burst {2 * qps})" if qps else "its default, 20 requests/s"


def markdown(results: dict[str, Any]) -> str:
    m = results.get("machine") or {}
    after = (results.get("machine_after") or {}).get("loadavg")
    lines = [
        f"Run {m.get('date')} on {m.get('nproc')} cores ({m.get('cpu_model')}, {m.get('mem_total_mib')} MiB);"
        f" load average before {m.get('loadavg')}, after {after}. Operator code: {results.get('operator_code')}.",
        f"kube-controller-manager client limit: {_kcm(results)}.",
        "",
        *_table(("measure", "target", "measured", ""), targets_rows(results)),
        "",
        "By number of objects (idle window per row; spec change = new version → new canary Deployment seen):",
        "",
        *_table(
            (
                "objects",
                "all Ready s",
                "RSS MiB",
                "idle requests",
                "idle writes",
                "req/obj/10 min",
                "CPU %",
                "change p50 s",
                "p99 s",
            ),
            sweep_rows(results),
        ),
    ]
    side = side_by_side_rows(results)
    if side:
        lines += ["", f"Side by side with Argo Rollouts {_get(results, 'argo', 'version')}:", ""]
        lines += _table(("measure", "rollguard", "Argo Rollouts", "rollguard/Argo"), side)
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Cost (idle requests, CPU) and latency (all Ready, spec change) against the number of objects."""
    points = (results.get("rollguard") or {}).get("by_objects") or []
    if not points:
        return None
    n = [p["objects"] for p in points]
    fig, (cost, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    cost.plot(n, [p["idle"]["requests_per_object_per_10min"] for p in points], "o-", label="requests/object/10 min")
    cost.plot(n, [p["idle"]["cpu_percent_of_a_core"] for p in points], "s-", label="CPU, % of a core")
    cost.plot(n, [p["idle"]["writes"] for p in points], "^-", label="writes in the idle window")
    cost.axhline(1, color="grey", lw=0.8, ls="--")
    argo_idle = _get(results, "argo", "idle")
    if argo_idle:
        cost.plot(
            [argo_idle["objects"]],
            [argo_idle["requests_per_object_per_10min"]],
            "kx",
            ms=9,
            label="Argo requests/object/10 min",
        )
    cost.set(title="idle cost (API server, /proc)", xlabel="ModelDeployments", yscale="symlog")
    cost.legend(fontsize=8)
    latency.plot(n, [p["seconds_until_all_ready"] for p in points], "o-", label="created at once → all Ready, s")
    latency.plot(n, [p["spec_change"].get("seconds_p50") for p in points], "s-", label="spec change → canary, p50 s")
    latency.plot(n, [p["spec_change"].get("seconds_p99") for p in points], "^-", label="spec change → canary, p99 s")
    latency.axhline(120, color="grey", lw=0.8, ls="--")
    latency.axhline(1, color="grey", lw=0.8, ls=":")
    latency.set(title="latency", xlabel="ModelDeployments", yscale="log")
    latency.legend(fontsize=8)
    m = results.get("machine") or {}
    fig.suptitle(
        f"rollguard, {results.get('operator_code')}; {m.get('nproc')} cores, load {m.get('loadavg')}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
