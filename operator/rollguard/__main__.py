"""`python -m rollguard` / `rollguard run`: logging, metrics server, the leader Lease if enabled, then kopf."""

from __future__ import annotations

import argparse
import asyncio
import sys

import kopf
import prometheus_client

from rollguard import logs
from rollguard.settings import Settings

JSON_DEPTH_LIMIT = 10_000  # the API server refuses deeper JSON ("exceeded max depth")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rollguard", description="Run the rollguard operator.")
    parser.add_argument("command", nargs="?", default="run", choices=["run"])
    parser.add_argument("--namespace", "-n", action="append", default=[], help="Watch this namespace (repeatable).")
    args = parser.parse_args(argv)
    # The API server nests JSON up to 10,000 levels, and a tenant can put that much into its own object's
    # metadata.managedFields (fieldsV1 is free-form): kopf's watcher must decode any object it may be sent.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), JSON_DEPTH_LIMIT * 5))
    settings = Settings()
    namespaces = args.namespace or settings.namespace_list
    logs.configure(settings.log_level, settings.log_format)
    prometheus_client.start_http_server(settings.metrics_port, addr="0.0.0.0")
    import rollguard.handlers  # noqa: F401, PLC0415 - registers the handlers with kopf

    elector = None
    if settings.leader_election:
        from rollguard import leader  # noqa: PLC0415
        from rollguard.adapters.kube import load_config  # noqa: PLC0415

        elector = leader.elect(settings, load_config())  # blocks until leading; exits if leadership is lost
    try:
        asyncio.run(
            kopf.operator(
                standalone=True,
                namespaces=namespaces,
                clusterwide=not namespaces,
                liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
            )
        )
    finally:
        if elector is not None:
            elector.release()  # kopf has stopped acting: a standby may lead now, without waiting out the Lease
    return 0


if __name__ == "__main__":
    sys.exit(main())
