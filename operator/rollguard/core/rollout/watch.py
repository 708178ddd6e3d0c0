"""After promotion: watch the new stable, and roll it back to the last known-good if it degrades."""

from __future__ import annotations

from rollguard.core import analysis, clock
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
