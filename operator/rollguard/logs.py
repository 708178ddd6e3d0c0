"""structlog JSON logs; kopf's own stdlib records go through the same renderer with their object."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import MutableMapping
from typing import Any

import structlog


def _kopf_object(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """kopf puts the object it logs about in record.k8s_ref; lift it to namespace/name fields."""
    record = event_dict.get("_record")
    ref = getattr(record, "k8s_ref", None) if record is not None else None
    if isinstance(ref, dict):
        event_dict.setdefault("namespace", ref.get("namespace"))
        event_dict.setdefault("name", ref.get("name"))
    return event_dict


class _QuietSuccesses(logging.Filter):
    """Drops kopf's "Timer 'resync' succeeded." lines: one per object per second is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and str(record.msg).endswith("succeeded."))


def configure(level: str = "INFO", fmt: str = "json") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    # exc_info (ours, and kopf's stdlib records) becomes an "exception" field holding the stack trace as text.
    tracebacks: list[Any] = [structlog.processors.format_exc_info] if fmt == "json" else []
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _kopf_object],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tracebacks, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(_QuietSuccesses())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    warnings.filterwarnings("once", message="Unverified HTTPS request")
    for noisy in ("urllib3", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
