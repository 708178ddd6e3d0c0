"""`kubectl rollguard`: watch and steer ModelDeployment rollouts by hand.

    kubectl rollguard status NAME [-o json|yaml] [--watch [--until-done] [--timeout 10m]]
    kubectl rollguard promote NAME [--full]     advance the canary one step (or all the way)
    kubectl rollguard abort NAME                roll the rollout in progress back
    kubectl rollguard pause NAME                hold the rollout where it is
    kubectl rollguard resume NAME               undo `pause` and release a hold
    kubectl rollguard retry NAME                roll out the rejected version again
    kubectl rollguard undo NAME [--to VERSION]  go back to a known-good version (default: the previous one)
    kubectl rollguard history NAME [-o json|yaml]

Every action writes only annotations (a JSON merge patch of metadata.annotations), never the spec:
the operator acts on each annotation value once (see rollguard.core.actions).

Exit codes: 0 done; 1 error (object not found, API unreachable, watch timed out);
2 refused (nothing the action applies to; unknown version) or bad usage;
3 `status --watch --until-done` saw the rollout end rolled back or failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rollguard import cli_render as render
from rollguard.api.base import duration_seconds
from rollguard.core.actions import PAUSED_ANNOTATION
from rollguard.core.naming import ANNOTATION_PREFIX, GROUP, PLURAL, VERSION

EXIT_OK, EXIT_ERROR, EXIT_REFUSED, EXIT_ROLLED_BACK = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
WATCH_INTERVAL = 2.0
ACTION_ATTEMPTS = 5
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

Obj = Mapping[str, Any]
_kube_config: Any = config  # the kubeconfig loaders are untyped


class CliError(Exception):
    """A failure to report in one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class ConflictError(CliError):
    """The object changed between reading and patching it (HTTP 409 on the resourceVersion precondition)."""


# -- arguments ---------------------------------------------------------------------------------
def _connection_flags(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """-n/--kubeconfig/--context, accepted before or after the command (kubectl passes both)."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="namespace of the ModelDeployment (default: the kubeconfig context's, else 'default')",
    )
    parser.add_argument("--kubeconfig", default=default, help="path to the kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")


def _output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text", help="output format")


def _duration(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return duration_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl rollguard",
        description="Watch and steer rollguard ModelDeployment rollouts. Actions only set annotations; "
        "the operator carries them out once each and never edits your spec.",
        epilog="Exit codes: 0 done, 1 error, 2 refused or bad usage, 3 rollout ended rolled back (--until-done).",
    )
    _connection_flags(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("name", metavar="NAME", help="the ModelDeployment")
        _connection_flags(sub, suppress=True)
        return sub

    status = command("status", "show phase, conditions, the rollout, its checks, the rejection and history")
    _output_flag(status)
    status.add_argument("-w", "--watch", action="store_true", help="refresh every 2s until Ctrl-C")
    status.add_argument(
        "--until-done",
        action="store_true",
        help="with --watch: stop when the rollout ends (exit 0 Ready, 3 rolled back or failed)",
    )
    status.add_argument(
        "--timeout", type=_duration, default=None, help="with --watch: give up after this long (e.g. 90s, 10m); exit 1"
    )
    status.add_argument("--interval", type=_duration, default=WATCH_INTERVAL, help=argparse.SUPPRESS)
    promote = command("promote", "advance the canary to its next step (the way to leave a step with an untimed pause)")
    promote.add_argument("--full", action="store_true", help="skip the remaining steps and promote now")
    command("abort", "roll the rollout in progress back to the serving version")
    command("pause", "hold the rollout where it is (sets rollguard.io/paused)")
    command("resume", "undo pause and release a hold (metrics unavailable, inconclusive analysis)")
    command("retry", "roll out the rejected version again")
    undo = command("undo", "go back to a known-good version from status.history")
    undo.add_argument("--to", metavar="VERSION", help="version (or revision) to go back to; default: the previous one")
    history = command("history", "list every version that served or was rolled back, with outcome and evidence")
    _output_flag(history)
    return parser


# -- actions, as pure plans --------------------------------------------------------------------
@dataclass(frozen=True)
class ActionPlan:
    """What an action writes (a merge patch of annotations) and the line it prints."""

    patch: dict[str, Any] | None
    message: str


def annotation_patch(annotations: Mapping[str, str | None]) -> dict[str, Any]:
    """A JSON merge patch touching only metadata.annotations (None removes a key)."""
    return {"metadata": {"annotations": dict(annotations)}}


def new_token() -> str:
    return str(time.time_ns())


def _follow(name: str, namespace: str, flags: Sequence[str] = ()) -> str:
    extra = "".join(f" {flag}" for flag in flags)
    return f"follow with: kubectl rollguard status {name} -n {namespace}{extra} --watch"


def plan_action(
    action: str,
    obj: Obj,
    token: str,
    *,
    full: bool = False,
    to: str | None = None,
    follow_flags: Sequence[str] = (),
) -> ActionPlan:
    """Decide what `action` writes on `obj`, or refuse (CliError, exit 2) when it applies to nothing."""
    meta = obj.get("metadata") or {}
    name, namespace = str(meta.get("name")), str(meta.get("namespace", "default"))
    status = render.status_of(obj)
    rollout: dict[str, Any] = dict(status.get("rollout") or {})
    target = (rollout.get("target") or {}).get("version", "?")
    kind = rollout.get("kind")
    follow = _follow(name, namespace, follow_flags)

    def requested(what: str) -> str:
        waits = (
            f" ({name} is paused: this takes effect after kubectl rollguard resume {name} -n {namespace})"
            if render.paused_by(obj) and action in ("promote", "retry", "undo")
            else ""
        )
        return f"requested {what} (token {token}){waits}; {follow}"

    if action == "promote":
        if not rollout:
            raise CliError(f"no rollout in progress for {name} in namespace {namespace}: nothing to promote", 2)
        if kind != "Canary":
            raise CliError(f"{name} is in a {kind} rollout of {target}, not a canary: there are no steps to promote", 2)
        if rollout.get("promoting"):
            return ActionPlan(None, f"canary {target} of {name} is already being promoted; nothing to do")
        key = "promote-full" if full else "promote"
        what = f"full promotion of canary {target} of {name}" if full else f"promotion of canary {target} of {name}"
        if not full:
            steps = render.steps_of(obj.get("spec") or {})
            following = int(rollout.get("stepIndex", 0)) + 1
            what += (
                f" to step {following + 1}/{len(steps)} ({steps[following].get('weight')}%)"
                if following < len(steps)
                else " past its last step"
            )
        return ActionPlan(annotation_patch({ANNOTATION_PREFIX + key: token}), requested(what))
    if action == "abort":
        if not rollout:
            raise CliError(f"no rollout in progress for {name} in namespace {namespace}: nothing to abort", 2)
        if kind == "Rollback":
            raise CliError(f"{name} is already rolling back to known-good {target}: nothing to abort", 2)
        serving = status.get("servingVersion") or "nothing"
        return ActionPlan(
            annotation_patch({ANNOTATION_PREFIX + "abort": token}),
            requested(f"abort of the {kind} rollout of {target} of {name} (back to {serving})"),
        )
    if action == "retry":
        rejected = status.get("rejected") or {}
        if not rejected:
            raise CliError(f"{name} in namespace {namespace} has no rejected version: nothing to retry", 2)
        wanted = render.requested_version(obj)
        if wanted is not None and rejected.get("version") != wanted:
            raise CliError(
                f"the rejected version {rejected.get('version')} of {name} is not what the spec asks for any more "
                f"({wanted}): nothing to retry",
                2,
            )
        return ActionPlan(
            annotation_patch({ANNOTATION_PREFIX + "retry": token}),
            requested(f"retry of rejected version {rejected.get('version', '?')} of {name}"),
        )
    if action == "pause":
        if render.paused_by(obj) == "annotation":
            return ActionPlan(None, f"{name} is already paused ({PAUSED_ANNOTATION}); nothing to do")
        where = f"the rollout of {target}" if rollout else "new rollouts"
        return ActionPlan(
            annotation_patch({PAUSED_ANNOTATION: "true"}),
            f"requested pause of {where} of {name} ({PAUSED_ANNOTATION}=true); {follow}",
        )
    if action == "resume":
        paused = render.paused_by(obj)
        hold = rollout.get("pausedReason")
        if paused == "spec" and not hold:
            raise CliError(
                f"{name} is paused by spec.paused, which only your manifest can change (the plugin never edits "
                "the spec): set spec.paused to false",
                2,
            )
        if paused is None and not hold:
            raise CliError(f"{name} in namespace {namespace} is neither paused nor held: nothing to resume", 2)
        released = " and ".join(
            [*(["the pause"] if paused == "annotation" else []), *([f"the {hold} hold"] if hold else [])]
        )
        spec_too = (
            "; spec.paused is also true, so it stays paused until the manifest sets it to false"
            if (obj.get("spec") or {}).get("paused") is True
            else ""
        )
        return ActionPlan(
            annotation_patch({PAUSED_ANNOTATION: None, ANNOTATION_PREFIX + "resume": token}),
            requested(f"resume of {name}, releasing {released}{spec_too}"),
        )
    if action == "undo":
        return _plan_undo(obj, name, namespace, status, rollout, token, to, requested)
    raise CliError(f"unknown action {action!r}", 2)


def _plan_undo(
    obj: Obj,
    name: str,
    namespace: str,
    status: Mapping[str, Any],
    rollout: Mapping[str, Any],
    token: str,
    to: str | None,
    requested: Callable[[str], str],
) -> ActionPlan:
    versions = render.known_good_versions(status)
    known = ", ".join(versions) or "none"
    if to is None:
        entry = render.previous_known_good(status)
        if entry is None:
            raise CliError(f"{name} has no earlier known-good version to go back to (known-good: {known})", 2)
    else:
        entry = render.find_known_good(status, to)
        if entry is None:
            raise CliError(
                f"{to!r} is not a known-good version of {name} in namespace {namespace}; known-good: {known} "
                f"(see kubectl rollguard history {name} -n {namespace})",
                2,
            )
    version, revision = str(entry.get("version")), str(entry.get("revision"))
    stable = status.get("stable") or {}
    if stable.get("revision") == revision and not rollout:
        return ActionPlan(None, f"{name} is already serving {version} (revision {revision}); nothing to do")
    # The operator resolves the argument to the newest promoted entry with that version or revision:
    # name the revision when the version alone would pick a different one.
    newest = render.find_known_good(status, version)
    argument = version if newest is not None and newest.get("revision") == revision else revision
    return ActionPlan(
        annotation_patch({ANNOTATION_PREFIX + "undo": f"{argument}@{token}"}),
        requested(f"undo of {name} to known-good version {version} (revision {revision})"),
    )


# -- the cluster ---------------------------------------------------------------------------------
class ClusterApi(Protocol):
    """What the commands need from the cluster (a fake in unit tests)."""

    @property
    def default_namespace(self) -> str: ...

    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


class Cluster:
    """The few API calls the plugin makes, through the official kubernetes client."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        self._context_namespace: str | None = None
        # insecure-skip-tls-verify is the kubeconfig's choice; kubectl honours it silently, and so do we.
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        try:
            _kube_config.load_kube_config(config_file=kubeconfig, context=context)
            _, active = _kube_config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = active
            if context:
                contexts, _ = _kube_config.list_kube_config_contexts(config_file=kubeconfig)
                chosen = next((c for c in contexts if c.get("name") == context), active)
            self._context_namespace = ((chosen or {}).get("context") or {}).get("namespace")
        except _kube_config.ConfigException as error:
            if kubeconfig or context or "KUBERNETES_SERVICE_HOST" not in os.environ:
                raise CliError(f"cannot load kubeconfig: {error}") from error
            _kube_config.load_incluster_config()
            if os.path.exists(SERVICE_ACCOUNT_NAMESPACE):
                with open(SERVICE_ACCOUNT_NAMESPACE) as handle:
                    self._context_namespace = handle.read().strip() or None
        self._api = client.CustomObjectsApi()

    @property
    def default_namespace(self) -> str:
        return self._context_namespace or "default"

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            namespace, name, lambda: self._api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        )
        return result

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._call(
            namespace,
            name,
            lambda: self._api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch, _content_type="application/merge-patch+json"
            ),
        )

    @staticmethod
    def _call(namespace: str, name: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ApiException as error:
            if error.status == 409:
                raise ConflictError(_api_error(error, namespace, name)) from error
            raise CliError(_api_error(error, namespace, name)) from error
        except HTTPError as error:
            raise CliError(f"cannot reach the Kubernetes API server: {error}") from error


def _api_error(error: Any, namespace: str, name: str) -> str:
    status = getattr(error, "status", None)
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    if status == 404:
        details = body.get("details") if isinstance(body, dict) else None
        if isinstance(details, dict) and details.get("name"):
            return f'ModelDeployment "{name}" not found in namespace "{namespace}"'
        return f"the ModelDeployment API ({GROUP}/{VERSION}) is not served here: is the rollguard CRD installed?"
    if status == 403:
        return f"forbidden: {message or error.reason}"
    return f"API error {status} ({error.reason}): {message or error.body}"


# -- commands ------------------------------------------------------------------------------------
def _dump(data: Any, output: str) -> str:
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False)
    return json.dumps(data, indent=2) + "\n"


def watch_status(
    fetch: Callable[[], Obj],
    out: TextIO,
    *,
    interval: float = WATCH_INTERVAL,
    until_done: bool = False,
    timeout: float | None = None,
    output: str = "text",
    clear: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Show the status every `interval` s until Ctrl-C, the rollout ending (`until_done`), or `timeout`."""
    started = clock()
    while True:
        obj = fetch()
        frame = render.render_status(obj) if output == "text" else _dump(render.status_of(obj), output)
        if clear:
            out.write("\033[H\033[2J")
        elif output == "text":
            out.write(f"--- {time.strftime('%H:%M:%S')}\n")
        out.write(frame)
        out.flush()
        if until_done and render.rollout_finished(obj):
            phase = render.status_of(obj).get("phase")
            return EXIT_OK if phase == "Ready" else EXIT_ROLLED_BACK
        if timeout is not None and clock() - started >= timeout:
            raise CliError(f"gave up watching after {render.duration_text(timeout)}: the rollout has not ended")
        sleep(interval)


def _follow_flags(args: argparse.Namespace) -> list[str]:
    flags = []
    if args.context:
        flags.append(f"--context {shlex.quote(args.context)}")
    if args.kubeconfig:
        flags.append(f"--kubeconfig {shlex.quote(args.kubeconfig)}")
    return flags


def run(args: argparse.Namespace, cluster: ClusterApi, out: TextIO) -> int:
    namespace = args.namespace or cluster.default_namespace
    name = args.name
    if args.command == "status":
        if args.watch:
            return watch_status(
                lambda: cluster.get(namespace, name),
                out,
                interval=args.interval,
                until_done=args.until_done,
                timeout=args.timeout,
                output=args.output,
                clear=out.isatty() and args.output == "text",
            )
        obj = cluster.get(namespace, name)
        out.write(render.render_status(obj) if args.output == "text" else _dump(render.status_of(obj), args.output))
        return EXIT_OK
    if args.command == "history":
        obj = cluster.get(namespace, name)
        history = render.status_of(obj).get("history") or []
        out.write(render.render_history(obj) if args.output == "text" else _dump(history, args.output))
        return EXIT_OK
    for _ in range(ACTION_ATTEMPTS):
        obj = cluster.get(namespace, name)
        plan = plan_action(
            args.command,
            obj,
            new_token(),
            full=getattr(args, "full", False),
            to=getattr(args, "to", None),
            follow_flags=_follow_flags(args),
        )
        if plan.patch is not None:
            # The plan was made from what we read: write only if the object is still that version,
            # so e.g. a promote is never written after the rollout it was checked against ended.
            patch = copy.deepcopy(plan.patch)
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                patch["metadata"]["resourceVersion"] = version
            try:
                cluster.patch(namespace, name, patch)
            except ConflictError:
                continue
        out.write(plan.message + "\n")
        return EXIT_OK
    raise CliError(f"{name} kept changing while the request was being written ({ACTION_ATTEMPTS} attempts); try again")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout
    try:
        return run(args, Cluster(args.kubeconfig, args.context), stream)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        stream.write("\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
