"""What `kubectl rollguard` shows: pure functions from a ModelDeployment (a plain dict, as the API
server returns it) to text, so every view is unit-tested without a cluster.

Status is read as a dict, not through the pydantic models: the plugin must still show whatever is
there when the operator is older or newer than the plugin, or has not written a status yet.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rollguard.api.spec import Analysis, Canary
from rollguard.core.attribution import MEANING as CAUSES
from rollguard.core.summary import HOLD_REASONS

WIDTH = 100
LABEL = 13  # width of the "Key:" column in the status view
HISTORY_IN_STATUS = 5
FINISHED_PHASES = ("Ready", "RolledBack", "Failed")
CONDITION_TYPES = ("Ready", "Reconciling", "Stalled", "MetricsAvailable")
PAUSED_ANNOTATION = "rollguard.io/paused"

_DEFAULT_STEPS = [step.model_dump(mode="json", by_alias=True) for step in Canary().steps]
_DEFAULT_FAILURE_LIMIT = Analysis().failure_limit
_DEFAULT_INCONCLUSIVE_LIMIT = Analysis().inconclusive_limit

Obj = Mapping[str, Any]
_KEEP = "\u00a0"  # a space `field` never wraps at


# -- small formatting helpers ------------------------------------------------------------------
def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None


def duration_text(seconds: float) -> str:
    """kubectl-style short durations: 42s, 3m20s, 2h5m, 3d4h."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs and minutes < 10 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes and hours < 10 else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours and days < 10 else f"{days}d"


def age(text: str | None, now: datetime) -> str:
    """'3m ago' from an ISO time; the raw text if it cannot be parsed; '-' if absent."""
    moment = _parse_time(text)
    if moment is None:
        return text or "-"
    delta = (now - moment).total_seconds()
    return f"in {duration_text(-delta)}" if delta < 0 else f"{duration_text(delta)} ago"


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], indent: int = 2, width: int | None = None
) -> list[str]:
    """Aligned columns; with `width`, the last column is clipped so each line fits."""
    cells = [list(headers), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        head = "".join(cell.ljust(widths[i] + 2) for i, cell in enumerate(row[:-1]))
        last = row[-1]
        if width is not None:
            last = clip(last, max(10, width - indent - len(head)))
        lines.append((" " * indent + head + last).rstrip())
    return lines


def field(key: str, value: str, indent: int = 0, wrap: bool = True) -> list[str]:
    """'Key:  value', the value wrapped to WIDTH and aligned under itself (commands are never wrapped)."""
    label = (" " * indent + key + ":").ljust(LABEL)
    if not wrap:
        return [label + value]
    wrapped = textwrap.wrap(value, WIDTH - LABEL, break_long_words=True, break_on_hyphens=False) or [""]
    lines = [label + wrapped[0], *[" " * LABEL + rest for rest in wrapped[1:]]]
    return [line.replace(_KEEP, " ") for line in lines]


# -- reading the object ------------------------------------------------------------------------
def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def status_of(obj: Obj) -> dict[str, Any]:
    return _dict(obj.get("status"))


def steps_of(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The canary steps the operator uses (spec defaults applied); [] for a Rolling strategy."""
    strategy = _dict(spec.get("strategy"))
    if strategy.get("type", "Canary") != "Canary":
        return []
    canary = _dict(strategy.get("canary"))
    if "steps" not in canary:
        return [dict(step) for step in _DEFAULT_STEPS]
    return [_dict(step) for step in _list(canary.get("steps"))]


def step_pause(step: Mapping[str, Any]) -> str | None:
    """The step's pause duration; None when the step waits for a manual promote."""
    duration = _dict(step.get("pause")).get("duration")
    return str(duration) if duration else None


def paused_by(obj: Obj) -> str | None:
    """Who paused the object: 'annotation', 'spec' or None."""
    annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
    if str(annotations.get(PAUSED_ANNOTATION, "")).lower() == "true":
        return "annotation"
    if _dict(obj.get("spec")).get("paused") is True:
        return "spec"
    return None


def known_good(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """History entries that served as promoted versions, oldest first."""
    return [_dict(e) for e in _list(status.get("history")) if _dict(e).get("outcome") == "Promoted"]


def known_good_versions(status: Mapping[str, Any]) -> list[str]:
    versions: list[str] = []
    for entry in known_good(status):
        version = str(entry.get("version", ""))
        if version and version not in versions:
            versions.append(version)
    return versions


def find_known_good(status: Mapping[str, Any], version: str) -> dict[str, Any] | None:
    """The newest promoted entry whose version (or revision) is `version`, as the operator matches."""
    matches = [e for e in known_good(status) if version in (e.get("version"), e.get("revision"))]
    return matches[-1] if matches else None


def previous_known_good(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """What `undo` goes back to by default: the newest promoted version that is neither serving
    nor the rejected one (the operator's own choice for a post-promotion rollback)."""
    serving = _dict(status.get("stable")).get("revision")
    rejected = _dict(status.get("rejected")).get("revision")
    candidates = [e for e in known_good(status) if e.get("revision") not in (serving, rejected)]
    return candidates[-1] if candidates else None


def rollout_finished(obj: Obj) -> bool:
    """No rollout in progress and the operator has seen the latest spec: Ready, RolledBack or Failed."""
    status = status_of(obj)
    generation = _dict(obj.get("metadata")).get("generation", 0)
    return (
        status.get("rollout") is None
        and int(status.get("observedGeneration", 0)) >= int(generation or 0)
        and status.get("phase") in FINISHED_PHASES
    )


# -- the status view ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    name: str
    namespace: str
    now: datetime

    def command(self, verb: str) -> str:
        return f"kubectl rollguard {verb} {self.name} -n {self.namespace}"


def _header(obj: Obj, status: Mapping[str, Any], ctx: _Context) -> list[str]:
    meta, spec = _dict(obj.get("metadata")), _dict(obj.get("spec"))
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    requested = str(_dict(spec.get("model")).get("version", "-"))
    serving = status.get("servingVersion") or "nothing"
    lines = [f"{ctx.name}  (namespace {ctx.namespace}, generation {number(generation)}, observed {number(observed)})"]
    rollout = _dict(status.get("rollout"))
    target = _dict(rollout.get("target")).get("version")
    rejected = _dict(status.get("rejected"))
    version = f"requested {requested}"
    if rejected.get("version") == requested and not rollout:
        version += f" (rejected: {rejected.get('reason', '?')})"
    version += f", serving {serving}"
    if rollout.get("kind") == "Rollback":
        version += f" (rolling back to {target})"
    elif target and target != requested:
        version += f" (rolling out {target})"
    lines += field("Version", version)
    if not status:
        lines += field("Phase", "-")
        lines += field(
            "Message",
            f"no status yet: is the rollguard operator running and watching namespace {ctx.namespace}?",
        )
        return lines
    phase = str(status.get("phase", "Pending"))
    lines += field("Phase", phase)
    if status.get("message"):
        lines += field("Message", str(status["message"]))
    replicas = f"{number(status.get('readyReplicas', 0))}/{number(status.get('replicas', 0))} ready"
    lines += field("Replicas", f"{replicas}; canary weight {number(status.get('canaryWeight', 0))}%")
    fallback = _dict(status.get("fallback"))
    if fallback:
        version = fallback.get("version", "?")
        if fallback.get("active"):
            since = age(fallback.get("since"), ctx.now)
            why = f"{fallback.get('reason', '?')}, cause {fallback.get('cause', '?')}"
            text = f"{version} serves the model's traffic, taken {since} ({why})"
        else:
            text = f"{version} kept warm ({number(fallback.get('readyReplicas', 0))} ready), no traffic"
        lines += field("Fallback", text)
    if generation is not None and observed is not None and int(observed) < int(generation):
        lines += field("Note", f"the operator has not processed generation {generation} yet")
    return lines


def _conditions(status: Mapping[str, Any]) -> list[str]:
    conditions = {c.get("type"): c for c in map(_dict, _list(status.get("conditions")))}
    rows = []
    for type_ in (*CONDITION_TYPES, *sorted(str(t) for t in conditions if t not in CONDITION_TYPES)):
        c = conditions.get(type_)
        if c is not None:
            rows.append([str(type_), str(c.get("status", "?")), str(c.get("reason", "")), str(c.get("message", ""))])
    if not rows:
        return []
    return ["Conditions:", *table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows, width=WIDTH)]


def _steps_line(steps: Sequence[Mapping[str, Any]], current: int | None, promoting: bool) -> str:
    parts = []
    for i, step in enumerate(steps):
        pause = step_pause(step)
        text = f"{number(step.get('weight'))}%{_KEEP}({pause or 'until promoted'})".replace(" ", _KEEP)
        parts.append(f"[{text}]" if i == current and not promoting else text)
    parts.append("[100%]" if promoting else "100%")
    return " -> ".join(parts)


def _state(obj: Obj, rollout: Mapping[str, Any], ctx: _Context) -> tuple[list[str], list[str]]:
    """Promoting, held or waiting, and why; and the commands a human can use about it."""
    target = _dict(rollout.get("target")).get("version", "?")
    kind = rollout.get("kind")
    states: list[str] = []
    commands: list[str] = []
    paused = paused_by(obj)
    if paused == "annotation":
        states.append(f"paused by the {PAUSED_ANNOTATION} annotation")
        commands.append(ctx.command("resume"))
    elif paused == "spec":
        states.append("paused by spec.paused; set it to false in the manifest to continue")
    hold = rollout.get("pausedReason")
    cause = f", cause {rollout['cause']}" if rollout.get("cause") else ""
    if hold:
        why = HOLD_REASONS.get(str(hold), str(hold))
        states.append(f"held ({hold}{cause}): {why}; resume to release the hold, or promote or abort by hand")
        commands.append(ctx.command("resume"))
    elif rollout.get("dependencyHoldSince"):
        since = age(rollout.get("dependencyHoldSince"), ctx.now)
        states.append(
            f"held (cause Dependency) since {since}: stable breaks the same limits as the canary, a shared outage "
            "not blamed on the canary; resumes by itself when stable recovers"
        )
        hold = "DependencyHold"
    if kind == "Rollback":
        states.append(f"rolling back to known-good {target}: {rollout.get('reason', '')}".rstrip(": "))
    elif rollout.get("promoting"):
        states.append(f"promoting: scaling {target} to full size, then it becomes stable")
    elif kind == "Canary" and not hold and not paused:
        steps = steps_of(_dict(obj.get("spec")))
        index = int(rollout.get("stepIndex", 0))
        step = steps[min(index, len(steps) - 1)] if steps else {}
        weight = number(step.get("weight"))
        pause = step_pause(step)
        if not rollout.get("weightReachedAt"):
            states.append(f"scaling the canary to {weight}% of traffic (waiting for its pods to be ready)")
        elif pause is None:
            states.append(f"waiting at {weight}% for a manual promote")
            commands.append(ctx.command("promote"))
        else:
            reached = _parse_time(rollout.get("weightReachedAt"))
            held_for = f"{duration_text((ctx.now - reached).total_seconds())} of {pause}" if reached else pause
            states.append(f"at {weight}% for {held_for}; moves on once the pause is over and a check round passes")
    elif kind in ("Initial", "Rolling") and not hold and not paused:
        states.append(f"waiting for every pod of {target} to be ready")
    return states, list(dict.fromkeys(commands))


def _rollout(obj: Obj, status: Mapping[str, Any], ctx: _Context) -> list[str]:
    rollout = _dict(status.get("rollout"))
    if not rollout:
        return []
    target = _dict(rollout.get("target"))
    kind = str(rollout.get("kind", "?"))
    lines = [
        *field(
            "Rollout",
            f"{kind} of {target.get('version', '?')} (revision {target.get('revision', '?')}), "
            f"started {age(rollout.get('startedAt'), ctx.now)}",
        )
    ]
    spec = _dict(obj.get("spec"))
    steps = steps_of(spec)
    if kind == "Canary" and steps:
        index = int(rollout.get("stepIndex", 0))
        promoting = bool(rollout.get("promoting"))
        position = "promoting" if promoting else f"{min(index, len(steps) - 1) + 1}/{len(steps)}"
        lines += field("Step", f"{position}  {_steps_line(steps, index, promoting)}", indent=2)
        reached = rollout.get("weightReachedAt")
        weight = (
            f"{number(status.get('canaryWeight', 0))}% of traffic to the canary "
            f"(step weight {number(rollout.get('weight', 0))}%"
            + (f", reached {age(reached, ctx.now)})" if reached else ", not reached yet)")
        )
        lines += field("Weight", weight, indent=2)
    states, commands = _state(obj, rollout, ctx)
    for state in states or ["progressing"]:
        lines += field("State", state, indent=2)
    for command in commands:
        lines += field("Next", command, indent=2, wrap=False)
    if kind == "Canary" and (rollout.get("checks") or rollout.get("lastAnalysisAt")):
        analysis = _dict(spec.get("analysis"))
        failure_limit = analysis.get("failureLimit", _DEFAULT_FAILURE_LIMIT)
        inconclusive_limit = analysis.get("inconclusiveLimit", _DEFAULT_INCONCLUSIVE_LIMIT)
        verdict = rollout.get("lastVerdict")
        last = f", last round {verdict} {age(rollout.get('lastAnalysisAt'), ctx.now)}" if verdict else ""
        lines += field(
            "Analysis",
            f"failures {number(rollout.get('failures', 0))} (limit {number(failure_limit)}), "
            f"inconclusive {number(rollout.get('inconclusive', 0))} (limit {number(inconclusive_limit)}){last}",
            indent=2,
        )
    return lines


def checks_table(checks: Sequence[Mapping[str, Any]], indent: int = 2) -> list[str]:
    """One row per check: its last value against its limit, the stable value, samples and counts;
    then the message of every check that did not pass."""
    rows = [
        [
            str(c.get("name", "?")),
            str(c.get("phase", "Pending")),
            number(c.get("value")),
            str(c.get("limit") or "-"),
            number(c.get("stableValue")),
            number(c.get("samples")),
            number(c.get("successes", 0)),
            number(c.get("failures", 0)),
            number(c.get("inconclusive", 0)),
            number(c.get("errors", 0)),
        ]
        for c in checks
    ]
    headers = ["NAME", "PHASE", "VALUE", "LIMIT", "STABLE", "SAMPLES", "PASS", "FAIL", "INCONCL", "ERR"]
    lines = table(headers, rows, indent=indent)
    for c in checks:
        if c.get("phase") not in ("Passed", "Pending") and c.get("message"):
            lines.append(" " * indent + clip(f"{c.get('name')}: {c['message']}", WIDTH - indent))
    return lines


def _checks(status: Mapping[str, Any], ctx: _Context) -> list[str]:
    lines: list[str] = []
    rollout = _dict(status.get("rollout"))
    checks = [_dict(c) for c in _list(rollout.get("checks"))]
    if checks:
        lines += ["", "Checks (canary):", *checks_table(checks)]
    watch = _dict(status.get("watch"))
    if watch:
        until = watch.get("until")
        span = f"until {age(until, ctx.now).removeprefix('in ')} from now" if until else "continuously"
        what = (
            f"checking known-good revision {watch.get('revision', '?')} for a shared outage that rolled back "
            f"{watch['verifies']} (never rolled back itself) {span}"
            if watch.get("verifies")
            else f"post-promotion analysis of the stable revision {watch.get('revision', '?')} {span}, "
            f"failures {number(watch.get('failures', 0))}"
        )
        lines += ["", *field("Watch", what)]
        watched = [_dict(c) for c in _list(watch.get("checks"))]
        if watched:
            lines += ["Checks (stable, after promotion):", *checks_table(watched)]
    return lines


def requested_version(obj: Obj) -> str | None:
    version = _dict(_dict(obj.get("spec")).get("model")).get("version")
    return None if version is None else str(version)


def _rejected(obj: Obj, status: Mapping[str, Any], ctx: _Context) -> list[str]:
    rejected = _dict(status.get("rejected"))
    if not rejected:
        return []
    requested = requested_version(obj)
    current = requested is None or rejected.get("version") == requested
    lines = [
        "",
        *field(
            "Rejected",
            f"{rejected.get('version', '?')} (revision {rejected.get('revision', '?')}): "
            f"{rejected.get('reason', '?')}, {age(rejected.get('at'), ctx.now)}",
        ),
    ]
    if rejected.get("cause"):
        lines += field("Cause", CAUSES.get(str(rejected["cause"]), str(rejected["cause"])), indent=2)
    if rejected.get("message"):
        lines += field("Why", str(rejected["message"]), indent=2)
    if rejected.get("check"):
        lines += field(
            "Evidence",
            f"check {rejected['check']} = {number(rejected.get('value'))}, limit {rejected.get('limit') or '-'}",
            indent=2,
        )
    if rejected.get("query"):
        lines += field("Query", str(rejected["query"]), indent=2)
    if current:
        lines += field("Next", f"{ctx.command('retry')}  (or push a new version)", indent=2, wrap=False)
    else:
        lines += field("Note", f"the spec now asks for {requested}; this rejection no longer applies to it", indent=2)
    return lines


def _history_rows(entries: Sequence[Mapping[str, Any]], now: datetime, serving: str | None) -> list[list[str]]:
    rows = []
    last_serving = max((i for i, e in enumerate(entries) if e.get("revision") == serving), default=-1)
    for i, entry in enumerate(entries):
        outcome = str(entry.get("outcome", "?")) + (" *" if i == last_serving else "")
        cause = f"[{entry['cause']}] " if entry.get("cause") else ""
        rows.append(
            [str(entry.get("version", "?")), outcome, age(entry.get("at"), now), cause + str(entry.get("reason", ""))]
        )
    return rows


def _history(status: Mapping[str, Any], ctx: _Context) -> list[str]:
    entries = [_dict(e) for e in _list(status.get("history"))]
    if not entries:
        return []
    shown = entries[-HISTORY_IN_STATUS:]
    serving = _dict(status.get("stable")).get("revision")
    title = f"History (last {len(shown)} of {len(entries)}, newest last; * = serving):"
    return [
        "",
        title,
        *table(["VERSION", "OUTCOME", "WHEN", "REASON"], _history_rows(shown, ctx.now, serving), width=WIDTH),
    ]


def render_status(obj: Obj, now: datetime | None = None) -> str:
    """The `kubectl rollguard status` view of one ModelDeployment."""
    meta = _dict(obj.get("metadata"))
    ctx = _Context(str(meta.get("name", "?")), str(meta.get("namespace", "default")), now or datetime.now(UTC))
    status = status_of(obj)
    lines = _header(obj, status, ctx)
    conditions = _conditions(status)
    if conditions:
        lines += ["", *conditions]
    rollout = _rollout(obj, status, ctx)
    if rollout:
        lines += ["", *rollout]
    elif status and paused_by(obj):
        if paused_by(obj) == "annotation":
            lines += ["", *field("State", f"paused by the {PAUSED_ANNOTATION} annotation: no new rollout starts")]
            lines += field("Next", ctx.command("resume"), wrap=False)
        else:
            lines += ["", *field("State", "paused by spec.paused: no new rollout starts until it is set to false")]
    lines += _checks(status, ctx)
    lines += _rejected(obj, status, ctx)
    lines += _history(status, ctx)
    return "\n".join(lines) + "\n"


def render_history(obj: Obj, now: datetime | None = None) -> str:
    """The `kubectl rollguard history` view: every recorded version with outcome and evidence."""
    meta = _dict(obj.get("metadata"))
    status = status_of(obj)
    entries = [_dict(e) for e in _list(status.get("history"))]
    name, namespace = meta.get("name", "?"), meta.get("namespace", "default")
    if not entries:
        return f"no history recorded for {name} in namespace {namespace} yet\n"
    moment = now or datetime.now(UTC)
    serving = _dict(status.get("stable")).get("revision")
    rows = []
    for row, entry in zip(_history_rows(entries, moment, serving), entries, strict=True):
        metrics = _dict(entry.get("metrics"))
        evidence = ", ".join(f"{k}={number(v)}" for k, v in metrics.items()) or "-"
        version, outcome, when, reason = row
        rows.append([version, str(entry.get("revision", "?")), outcome, when, evidence, reason])
    lines = [
        f"{name}  (namespace {namespace}; oldest first; * = serving)",
        *table(["VERSION", "REVISION", "OUTCOME", "WHEN", "METRICS", "REASON"], rows, indent=0),
    ]
    versions = known_good_versions(status)
    if versions:
        lines.append(f"known-good versions (kubectl rollguard undo {name} --to VERSION): {', '.join(versions)}")
    return "\n".join(lines) + "\n"
