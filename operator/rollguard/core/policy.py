"""What a model's pods may use: the platform team's decision, never the ModelDeployment author's.

An author who may only write ModelDeployments must not get, through rollguard, a pod that runs as
another ServiceAccount, reads a Secret or ConfigMap, mounts a PVC, tolerates a taint or makes the
kubelet probe an arbitrary host. Everything here is pure: the operator builds a `PodPolicy` from
its settings (ROLLGUARD_POD_* env, chart values `podPolicy.*`) and `violations()` judges the
runtime section of a revision's template (Kubernetes Pod field names, camelCase) before anything
is written. Compare Flux's `--default-service-account` / `--no-cross-namespace-refs` lockdown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

ANY = "*"


@dataclass(frozen=True)
class Allowed:
    """An allow-list of names (shell-style patterns; `*` allows any), and the setting that holds it."""

    patterns: tuple[str, ...]
    env: str
    chart_value: str

    def permits(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self.patterns)

    def how_to_allow(self, name: str) -> str:
        now = ",".join(self.patterns) if self.patterns else "none"
        return (
            f"the platform allows {now}; a platform admin can add {name!r} to {self.env} "
            f"/ chart value {self.chart_value}"
        )


def _allowed(patterns: tuple[str, ...], env: str, chart_value: str) -> Allowed:
    return Allowed(tuple(p for p in patterns if p), env, chart_value)


@dataclass(frozen=True)
class PodPolicy:
    """The platform's pod policy. The defaults are the locked-down ones."""

    default_service_account: str | None = None
    """Pods run as this ServiceAccount unless the author names an allowed one (None: the namespace's `default`)."""
    service_accounts: tuple[str, ...] = ()
    automount_service_account_token: bool = False
    secrets: tuple[str, ...] = ()
    config_maps: tuple[str, ...] = ()
    persistent_volume_claims: tuple[str, ...] = ()
    toleration_keys: tuple[str, ...] = ()
    node_selector_keys: tuple[str, ...] = (ANY,)
    restricted_security_context: bool = True

    @property
    def allowed_service_accounts(self) -> Allowed:
        extra = (self.default_service_account,) if self.default_service_account else ()
        return _allowed(
            (*self.service_accounts, *extra), "ROLLGUARD_POD_ALLOWED_SERVICE_ACCOUNTS", "podPolicy.serviceAccounts"
        )

    @property
    def allowed_secrets(self) -> Allowed:
        return _allowed(self.secrets, "ROLLGUARD_POD_ALLOWED_SECRETS", "podPolicy.secrets")

    @property
    def allowed_config_maps(self) -> Allowed:
        return _allowed(self.config_maps, "ROLLGUARD_POD_ALLOWED_CONFIG_MAPS", "podPolicy.configMaps")

    @property
    def allowed_claims(self) -> Allowed:
        return _allowed(
            self.persistent_volume_claims,
            "ROLLGUARD_POD_ALLOWED_PERSISTENT_VOLUME_CLAIMS",
            "podPolicy.persistentVolumeClaims",
        )

    @property
    def allowed_toleration_keys(self) -> Allowed:
        return _allowed(self.toleration_keys, "ROLLGUARD_POD_ALLOWED_TOLERATION_KEYS", "podPolicy.tolerationKeys")

    @property
    def allowed_node_selector_keys(self) -> Allowed:
        return _allowed(
            self.node_selector_keys, "ROLLGUARD_POD_ALLOWED_NODE_SELECTOR_KEYS", "podPolicy.nodeSelectorKeys"
        )


LOCKED_DOWN = PodPolicy()


def split_list(value: str) -> tuple[str, ...]:
    """A comma-separated setting as a tuple of trimmed, non-empty entries."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


# -- the restricted Pod Security profile ---------------------------------------------------------
# https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted
POD_SECURITY_CONTEXT: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod_identity(runtime: dict[str, Any], policy: PodPolicy) -> dict[str, Any]:
    """The pod-spec fields the platform decides: ServiceAccount, token mount, securityContext."""
    fields: dict[str, Any] = {"automountServiceAccountToken": policy.automount_service_account_token}
    account = runtime.get("serviceAccountName") or policy.default_service_account
    if account:
        fields["serviceAccountName"] = account
    if policy.restricted_security_context:
        fields["securityContext"] = dict(POD_SECURITY_CONTEXT)
    return fields


# -- judging a revision's runtime ------------------------------------------------------------------
def _violation(field: str, value: str, rule: str) -> str:
    return f"spec.runtime.{field}: {value!r} is not allowed ({rule})"


def _refs(runtime: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(field path, kind, name) of every Secret, ConfigMap and PVC the container would read."""
    for i, var in enumerate(runtime.get("env") or []):
        source = (var or {}).get("valueFrom") or {}
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if isinstance(source.get(key), dict):
                yield f"env[{i}].valueFrom.{key}.name", kind, str(source[key].get("name", ""))
    for i, source in enumerate(runtime.get("envFrom") or []):
        for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            if isinstance((source or {}).get(key), dict):
                yield f"envFrom[{i}].{key}.name", kind, str(source[key].get("name", ""))
    for i, entry in enumerate(runtime.get("volumes") or []):
        volume = entry or {}
        if isinstance(volume.get("secret"), dict):
            yield f"volumes[{i}].secret.secretName", "Secret", str(volume["secret"].get("secretName", ""))
        if isinstance(volume.get("configMap"), dict):
            yield f"volumes[{i}].configMap.name", "ConfigMap", str(volume["configMap"].get("name", ""))
        if isinstance(volume.get("persistentVolumeClaim"), dict):
            claim = str(volume["persistentVolumeClaim"].get("claimName", ""))
            yield f"volumes[{i}].persistentVolumeClaim.claimName", "PersistentVolumeClaim", claim
        for j, projected in enumerate(((volume.get("projected") or {}).get("sources")) or []):
            for key, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                if isinstance((projected or {}).get(key), dict):
                    name = str(projected[key].get("name", ""))
                    yield f"volumes[{i}].projected.sources[{j}].{key}.name", kind, name


def _probe_hosts(runtime: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for probe_field in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = runtime.get(probe_field)
        if not isinstance(probe, dict):
            continue
        for handler in ("httpGet", "tcpSocket"):
            host = (probe.get(handler) or {}).get("host") if isinstance(probe.get(handler), dict) else None
            if host:
                yield f"{probe_field}.{handler}.host", str(host)


def violations(runtime: dict[str, Any], policy: PodPolicy) -> list[str]:
    """Every way this runtime reaches beyond what the platform allows; each names field, value and setting."""
    problems: list[str] = []
    account = runtime.get("serviceAccountName")
    accounts = policy.allowed_service_accounts
    if account and not accounts.permits(str(account)):
        problems.append(_violation("serviceAccountName", str(account), accounts.how_to_allow(str(account))))
    by_kind = {
        "Secret": policy.allowed_secrets,
        "ConfigMap": policy.allowed_config_maps,
        "PersistentVolumeClaim": policy.allowed_claims,
    }
    for path, kind, name in _refs(runtime):
        if not by_kind[kind].permits(name):
            problems.append(_violation(path, name, f"{kind} {name!r}: {by_kind[kind].how_to_allow(name)}"))
    for i, volume in enumerate(runtime.get("volumes") or []):
        if isinstance(volume, dict) and "hostPath" in volume:
            problems.append(
                _violation(f"volumes[{i}].hostPath", str(volume["hostPath"]), "no setting allows node paths")
            )
    tolerations = policy.allowed_toleration_keys
    for i, toleration in enumerate(runtime.get("tolerations") or []):
        key = str((toleration or {}).get("key") or "")
        if not key and ANY not in tolerations.patterns:
            rule = f"an empty key tolerates every taint; only allowed with {tolerations.env}=*"
            problems.append(_violation(f"tolerations[{i}].key", key, rule))
        elif key and not tolerations.permits(key):
            problems.append(_violation(f"tolerations[{i}].key", key, f"taint key: {tolerations.how_to_allow(key)}"))
    selectors = policy.allowed_node_selector_keys
    for key in runtime.get("nodeSelector") or {}:
        if not selectors.permits(str(key)):
            problems.append(_violation(f"nodeSelector.{key}", str(key), f"node label: {selectors.how_to_allow(key)}"))
    for path, host in _probe_hosts(runtime):
        # The kubelet runs probes from the node: a host would make every node fetch it (e.g. cloud metadata).
        rule = "probes always target the pod itself and no setting allows a host; remove `host`"
        problems.append(_violation(path, host, rule))
    return problems
