"""After promotion: watch the new stable, and roll it back to the last known-good if it degrades.

With one version serving, a shared outage (a feature store, an upstream API) looks like a regression: no
second version runs to compare in the same round. The rollback provides one: the known-good version then
serves the same traffic, and if it breaks the check that rejected the degraded version too, the outage was
shared (cause Dependency) and, while the spec still asks for it, the degraded version is rolled out again
as a canary, which the dependency hold keeps waiting until stable recovers.
"""

from __future__ import annotations

from rollguard.api.status import WatchStatus
from rollguard.core import analysis, clock
from rollguard.core.attribution import stable_breach
from rollguard.core.rollout import announce
from rollguard.core.rollout.state import Pass, failure_detail


def progress_watch(p: Pass) -> None:
    watch, stable = p.status.watch, p.status.stable
    if watch is None or stable is None:
        return
    if watch.revision != stable.revision or (watch.until and clock.seconds_since(watch.until, p.now) >= 0):
        p.status.watch = None
        return
    if p.inputs.analysis is None:
        return
    verdict = analysis.round_verdict(p.inputs.analysis)
    watch.checks, watch.last_analysis_at, watch.last_verdict = p.inputs.analysis, p.now_iso, verdict
    if watch.verifies is not None:
        _verify(p, watch, verdict)
        return
    watch.failures += verdict == "Failed"
    watch.consecutive_errors = watch.consecutive_errors + 1 if verdict == "Unavailable" else 0
    watch.metrics_unavailable_since = (
        (watch.metrics_unavailable_since or p.now_iso) if verdict == "Unavailable" else None
    )
    if watch.failures > p.spec.analysis.failure_limit:
        failed = analysis.first_failure(watch.checks)
        previous = p.last_known_good(exclude=stable.revision)
        detail = failure_detail(failed)
        cause = p.reject(stable, "PostPromotionAnalysisFailed", detail, failed)
        p.record(stable, "RolledBack", f"PostPromotionAnalysisFailed: {detail}", watch.checks, cause)
        p.status.watch = None
        p.events.append(announce.degraded(stable.version, cause, detail, previous.version if previous else None))
        if previous is None:
            return
        p.start("Rollback", previous, f"stable {stable.version} degraded after promotion: {detail}")


def _verify(p: Pass, watch: WatchStatus, verdict: str) -> None:
    """A round on the known-good version after a post-promotion rollback: shared outage, or the version's own."""
    rejected, stable = p.status.rejected, p.status.stable
    if rejected is None or rejected.revision != watch.verifies or stable is None:
        p.status.watch = None  # retried or replaced meanwhile: nothing left to attribute
        return
    if verdict == "Passed":
        p.status.watch = None  # the known-good version is healthy on the same traffic: the degradation was its own
        return
    checks = {check.name: check for check in p.spec.analysis.metrics}
    same = next((c for c in watch.checks if c.phase == "Failed" and c.name == rejected.check), None)
    breach = stable_breach(checks[same.name], same.value) if same is not None and same.name in checks else None
    if same is None or breach is None:
        return  # no evidence either way yet (inconclusive, unavailable, or another check): until watch.until
    p.status.watch = None
    rejected.cause = "Dependency"
    entry = next((h for h in reversed(p.status.history) if h.revision == rejected.revision), None)
    if entry is not None and entry.outcome == "RolledBack":
        entry.cause = "Dependency"
    again = p.desired.revision == rejected.revision
    what_next = (
        f"rolling {rejected.version} out again as a canary, held while stable fails"
        if again
        else "the spec no longer asks for it"
    )
    p.event(
        "Warning",
        "SharedOutageAfterPromotion",
        f"known-good version {stable.version} breaks check {same.name} too right after taking over "
        f"({breach.removeprefix('stable ')}): version {rejected.version} was rolled back for a shared "
        f"outage, not its own fault (cause Dependency); {what_next}",
    )
    if again:
        p.status.rejected = None
        if not p.paused:
            p.start(
                "Canary" if p.spec.strategy.type == "Canary" else "Rolling",
                p.desired,
                f"{rejected.version} was rolled back for a shared outage (cause Dependency)",
            )
