"""The child manifests built for a ModelDeployment, pinned by golden files and checked property by property.

Golden files live in tests/golden/. After an intended change to the builders, rewrite them with
    ROLLGUARD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_builders.py
and review the diff before committing.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import RevisionRef
from rollguard.core import builders, naming
from rollguard.core.builders import Manifest, Owner
from rollguard.core.rollout import canary_replicas

GOLDEN = Path(__file__).parent / "golden"
INPUT = GOLDEN / "input-modeldeployment.yaml"
UPDATE_ENV = "ROLLGUARD_UPDATE_GOLDEN"


# -- inputs ------------------------------------------------------------------------------------
def load_input() -> dict[str, Any]:
    return dict(yaml.safe_load(INPUT.read_text()))


def owner_of(body: dict[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(meta["name"], meta["namespace"], meta["uid"])


def spec_of(body: dict[str, Any], **model_changes: str) -> ModelDeploymentSpec:
    raw = dict(body["spec"])
    raw["model"] = {**raw["model"], **model_changes}
    return ModelDeploymentSpec.model_validate(raw)


def ref_of(spec: ModelDeploymentSpec) -> RevisionRef:
    template = naming.template_of(spec)
    return builders.revision_ref(template, naming.revision_of(template))


BODY = load_input()
OWNER = owner_of(BODY)
SPEC = spec_of(BODY)
STABLE = ref_of(SPEC)
CANARY_SPEC = spec_of(BODY, version="1.5.0", uri="s3://ml-models-prod/fraud-detector/1.5.0/")
CANARY = ref_of(CANARY_SPEC)
CANARY_STEP_WEIGHT = 10


def stable_deployment() -> Manifest:
    # The stable revision under an autoscaler: replicas are left to the HPA.
    return builders.deployment(OWNER, SPEC, STABLE, None, "stable")


def canary_deployment() -> Manifest:
    replicas = canary_replicas(SPEC.replicas, CANARY_STEP_WEIGHT)
    return builders.deployment(OWNER, CANARY_SPEC, CANARY, replicas, "canary")


def model_service() -> Manifest:
    return builders.service(OWNER, SPEC.runtime.port)


def role_service(role: str, revision: str) -> Manifest:
    return builders.service(
        OWNER, SPEC.runtime.port, name=naming.role_service_name(OWNER.name, role), rollout_id=revision
    )


def pdb() -> Manifest:
    return builders.disruption_budget(OWNER, SPEC.replicas - SPEC.disruption_budget.max_unavailable)


def hpa() -> Manifest:
    return builders.autoscaler(OWNER, SPEC, STABLE.revision)


BUILT: dict[str, Callable[[], Manifest]] = {
    "deployment-stable": stable_deployment,
    "deployment-canary": canary_deployment,
    "service": model_service,
    "service-stable": lambda: role_service("stable", STABLE.revision),
    "service-canary": lambda: role_service("canary", CANARY.revision),
    "poddisruptionbudget": pdb,
    "horizontalpodautoscaler": hpa,
}


# -- golden comparison -------------------------------------------------------------------------
def dump(manifest: Manifest) -> str:
    return yaml.safe_dump(manifest, sort_keys=False, width=120)


def check_golden(directory: Path, name: str, manifest: Manifest, update: bool) -> None:
    """Rewrite the golden file in update mode; otherwise fail with a unified diff on any difference."""
    path = directory / f"{name}.yaml"
    if update:
        path.write_text(dump(manifest))
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; create it with {UPDATE_ENV}=1", pytrace=False)
    committed = path.read_text()
    if yaml.safe_load(committed) != manifest:
        diff = "".join(
            difflib.unified_diff(
                dump(yaml.safe_load(committed)).splitlines(keepends=True),
                dump(manifest).splitlines(keepends=True),
                fromfile=f"{path.name} (committed)",
                tofile=f"{name} (built now)",
            )
        )
        pytest.fail(
            f"{name} differs from the golden file {path}:\n{diff}\n"
            f"If the change is intended, run {UPDATE_ENV}=1 .venv/bin/python -m pytest tests/test_builders.py "
            "and commit the updated golden files.",
            pytrace=False,
        )


@pytest.mark.parametrize("name", sorted(BUILT))
def test_built_manifest_matches_golden_file(name: str) -> None:
    check_golden(GOLDEN, name, BUILT[name](), update=os.environ.get(UPDATE_ENV) == "1")


def test_golden_mismatch_fails_with_a_unified_diff_and_the_update_command(tmp_path: Path) -> None:
    manifest = model_service()
    check_golden(tmp_path, "service", manifest, update=True)
    assert (tmp_path / "service.yaml").exists(), "update mode should write the golden file"
    check_golden(tmp_path, "service", manifest, update=False)  # identical: passes

    changed = {**manifest, "spec": {**manifest["spec"], "type": "NodePort"}}
    with pytest.raises(pytest.fail.Exception) as failure:
        check_golden(tmp_path, "service", changed, update=False)
    text = str(failure.value)
    assert "+++ service (built now)" in text, f"a mismatch should show a unified diff, got:\n{text}"
    assert "+  type: NodePort" in text, f"the diff should show the added line, got:\n{text}"
    assert f"{UPDATE_ENV}=1" in text, f"a mismatch should say how to update the golden files, got:\n{text}"


def test_golden_files_are_all_produced_by_a_builder() -> None:
    on_disk = {path.stem for path in GOLDEN.glob("*.yaml")} - {INPUT.stem}
    assert on_disk == set(BUILT), f"golden files without a builder (stale?) or missing: {on_disk ^ set(BUILT)}"


# -- properties a user relies on ---------------------------------------------------------------
def container(manifest: Manifest) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"expected exactly one container, got {[c['name'] for c in containers]}"
    return dict(containers[0])


def test_model_identity_reaches_the_container_as_env_vars_before_user_env() -> None:
    env = container(stable_deployment())["env"]
    by_name = {var["name"]: var for var in env}
    expected = {
        "MODEL_NAME": "fraud-detector",
        "MODEL_VERSION": "1.4.0",
        "MODEL_URI": "s3://ml-models-prod/fraud-detector/1.4.0/",
        "ROLLGUARD_ROLLOUT_ID": STABLE.revision,
        "MODEL_FORMAT": "xgboost",
    }
    for name, value in expected.items():
        assert by_name.get(name, {}).get("value") == value, f"env {name} should be {value!r}, got {by_name.get(name)}"
    names = [var["name"] for var in env]
    assert names.index("MLSERVER_HTTP_PORT") > names.index("ROLLGUARD_ROLLOUT_ID"), (
        f"user env should follow the model env vars (so it can refer to them), got order {names}"
    )
    assert by_name["AWS_ACCESS_KEY_ID"] == {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "model-store-credentials", "key": "access-key-id"}},
    }, f"valueFrom should pass through unchanged with a camelCase key, got {by_name['AWS_ACCESS_KEY_ID']}"


def test_model_format_env_is_omitted_when_no_format_is_given() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"name": "iris", "version": "1", "uri": "gs://b/iris"}, "runtime": {"image": "img:1"}}
    )
    names = [var["name"] for var in container(builders.deployment(OWNER, spec, ref_of(spec), 1, "stable"))["env"]]
    assert "MODEL_FORMAT" not in names, f"MODEL_FORMAT should be absent without spec.model.format, got {names}"


def test_pod_labels_carry_model_version_and_rollout_id_but_not_the_role() -> None:
    manifest = canary_deployment()
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[naming.LABEL_MODEL] == "fraud-detector", f"pod labels: {pod_labels}"
    assert pod_labels[naming.LABEL_VERSION] == "1.5.0", f"pod labels: {pod_labels}"
    assert pod_labels[naming.LABEL_ROLLOUT_ID] == CANARY.revision, f"pod labels: {pod_labels}"
    assert pod_labels[naming.LABEL_MD] == "fraud-detector", f"pod labels: {pod_labels}"
    assert naming.LABEL_ROLE not in pod_labels, (
        f"the role must not be a pod label (promotion would restart pods): {pod_labels}"
    )
    assert manifest["metadata"]["labels"][naming.LABEL_ROLE] == "canary", (
        f"the role should be a label on the Deployment itself, got {manifest['metadata']['labels']}"
    )


def test_promotion_changes_no_pod_template() -> None:
    as_canary = builders.deployment(OWNER, SPEC, STABLE, 4, "canary")
    as_stable = builders.deployment(OWNER, SPEC, STABLE, None, "stable")
    assert as_canary["spec"]["template"] == as_stable["spec"]["template"], (
        "the same revision as canary and as stable should have an identical pod template (no restart on promotion)"
    )
    assert as_canary["metadata"]["name"] == as_stable["metadata"]["name"], "promotion should keep the Deployment"


def test_deployment_selector_matches_its_pods_only() -> None:
    manifest = stable_deployment()
    selector = manifest["spec"]["selector"]["matchLabels"]
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items(), f"selector {selector} must match the pod labels {pod_labels}"
    assert selector.get(naming.LABEL_ROLLOUT_ID) == STABLE.revision, (
        f"each revision's Deployment should select only its own pods by rollout id, got {selector}"
    )


def test_services_and_budget_select_the_right_pods() -> None:
    stable_pods = stable_deployment()["spec"]["template"]["metadata"]["labels"]
    canary_pods = canary_deployment()["spec"]["template"]["metadata"]["labels"]
    model_selector = model_service()["spec"]["selector"]
    assert model_selector.items() <= stable_pods.items(), (
        f"the model Service should reach stable pods: {model_selector}"
    )
    assert model_selector.items() <= canary_pods.items(), (
        f"the model Service should reach canary pods: {model_selector}"
    )
    stable_selector = role_service("stable", STABLE.revision)["spec"]["selector"]
    assert stable_selector.items() <= stable_pods.items(), f"stable Service should reach stable pods: {stable_selector}"
    assert not stable_selector.items() <= canary_pods.items(), (
        f"stable Service must not reach canary pods: {stable_selector}"
    )
    budget_selector = pdb()["spec"]["selector"]["matchLabels"]
    assert budget_selector.items() <= stable_pods.items(), f"the PDB should cover serving pods: {budget_selector}"
    assert budget_selector.items() <= canary_pods.items(), f"the PDB should cover canary pods: {budget_selector}"


def test_service_targets_the_named_container_port() -> None:
    port = model_service()["spec"]["ports"][0]
    container_port = container(stable_deployment())["ports"][0]
    assert port["port"] == 8080, f"the Service should listen on spec.runtime.port, got {port}"
    assert port["targetPort"] == container_port["name"], f"targetPort {port} should name the container port"
    assert container_port["containerPort"] == 8080, f"container port should be spec.runtime.port: {container_port}"


@pytest.mark.parametrize("name", sorted(BUILT))
def test_every_child_is_controlled_by_the_model_deployment(name: str) -> None:
    metadata = BUILT[name]()["metadata"]
    assert metadata["namespace"] == "ml-prod", f"{name} should live in the ModelDeployment's namespace"
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "rollguard.io/v1alpha1",
            "kind": "ModelDeployment",
            "name": "fraud-detector",
            "uid": "7d0c4f5e-2a61-4c3b-9e8f-1b2a3c4d5e6f",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ], f"{name} should have one controller ownerReference to the ModelDeployment, got {metadata['ownerReferences']}"
    assert metadata["labels"][naming.LABEL_MANAGED_BY] == "rollguard", f"{name} labels: {metadata['labels']}"


@pytest.mark.parametrize(("replicas", "present"), [(None, False), (0, True), (3, True)])
def test_replicas_are_omitted_only_when_the_autoscaler_decides(replicas: int | None, present: bool) -> None:
    spec = builders.deployment(OWNER, SPEC, STABLE, replicas, "stable")["spec"]
    assert ("replicas" in spec) == present, f"replicas={replicas}: 'replicas' in Deployment spec should be {present}"
    if present:
        assert spec["replicas"] == replicas, f"replicas should be {replicas}, got {spec['replicas']}"


def test_scheduling_and_resources_reach_the_pod() -> None:
    manifest = stable_deployment()
    pod_spec = manifest["spec"]["template"]["spec"]
    resources = container(manifest)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1", f"the GPU limit should reach the container: {resources}"
    assert resources["requests"] == {"cpu": "2", "memory": "4Gi"}, f"requests: {resources}"
    assert pod_spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, (
        f"the GPU node pool selector should reach the pod, got {pod_spec.get('nodeSelector')}"
    )
    assert pod_spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], (
        f"tolerations should pass through unchanged, got {pod_spec.get('tolerations')}"
    )
    assert pod_spec["serviceAccountName"] == "fraud-detector-models", f"pod spec: {pod_spec}"
    assert container(manifest)["args"] == ["mlserver", "start", "/mnt/models"], "args should pass through"
    spread = pod_spec["topologySpreadConstraints"]
    assert spread == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {naming.LABEL_ROLLOUT_ID: STABLE.revision}},
        }
    ], f"replicas of one revision should spread by zone, got {spread}"


def test_minimal_spec_gets_default_probes_and_no_optional_pod_fields() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"name": "iris", "version": "1", "uri": "gs://b/iris"}, "runtime": {"image": "img:1"}, "spread": None}
    )
    manifest = builders.deployment(OWNER, spec, ref_of(spec), 1, "stable")
    pod_spec = manifest["spec"]["template"]["spec"]
    box = container(manifest)
    assert box["readinessProbe"]["tcpSocket"] == {"port": "http"}, f"default readiness probe: {box['readinessProbe']}"
    assert box["livenessProbe"]["initialDelaySeconds"] == 30, f"default liveness probe: {box['livenessProbe']}"
    for key in ("resources", "command", "args"):
        assert key not in box, f"{key} should be omitted when the spec sets none, got {box.get(key)}"
    for key in ("nodeSelector", "tolerations", "serviceAccountName", "topologySpreadConstraints"):
        assert key not in pod_spec, f"{key} should be omitted when the spec sets none (spread: null), got {pod_spec}"


def test_a_given_readiness_probe_replaces_the_default() -> None:
    probe = container(stable_deployment())["readinessProbe"]
    assert probe == {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}, (
        f"spec.runtime.readinessProbe should be used as written, got {probe}"
    )


def test_longest_allowed_name_gives_valid_child_names() -> None:
    owner = Owner("m" * 40, "ns", "uid")  # the CRD allows metadata.name up to 40 characters
    manifest = builders.deployment(owner, SPEC, STABLE, 1, "stable")
    name = manifest["metadata"]["name"]
    assert len(name) <= 63, f"Deployment name {name!r} must fit a DNS label (63), has {len(name)}"
    assert name.endswith(STABLE.revision), f"the Deployment name should end with the revision, got {name!r}"
    too_long = {k: v for k, v in manifest["metadata"]["labels"].items() if len(v) > 63}
    assert not too_long, f"label values must be at most 63 characters: {too_long}"


def test_revision_changes_with_model_or_runtime_only() -> None:
    assert CANARY.revision != STABLE.revision, "a new model version should be a new revision"
    raw = dict(BODY["spec"], replicas=6, analysis={"interval": "5m"}, paused=True)
    same = ref_of(ModelDeploymentSpec.model_validate(raw))
    assert same.revision == STABLE.revision, "changing replicas, analysis or paused should not start a new revision"
    runtime = dict(BODY["spec"]["runtime"], image="docker.io/seldonio/mlserver:1.6.2-xgboost")
    patched = ref_of(ModelDeploymentSpec.model_validate(dict(BODY["spec"], runtime=runtime)))
    assert patched.revision != STABLE.revision, "a new runtime image should be a new revision"


def test_revision_ref_can_rebuild_the_revision_from_status() -> None:
    rebuilt = builders.revision_ref(STABLE.template, STABLE.revision)
    assert (rebuilt.version, rebuilt.image, rebuilt.uri) == (
        "1.4.0",
        "docker.io/seldonio/mlserver:1.6.1-xgboost",
        "s3://ml-models-prod/fraud-detector/1.4.0/",
    ), f"a RevisionRef should name the version, image and URI it was built from, got {rebuilt}"
    assert builders.deployment(OWNER, SPEC, rebuilt, None, "stable") == stable_deployment(), (
        "a revision rebuilt from its stored template should produce the same Deployment (rollback to known-good)"
    )


def test_autoscaler_scales_the_stable_deployment() -> None:
    spec = hpa()["spec"]
    assert spec["scaleTargetRef"]["name"] == naming.deployment_name("fraud-detector", STABLE.revision), spec
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 12), f"HPA bounds from spec.autoscaling: {spec}"
    target = spec["metrics"][0]["resource"]["target"]
    assert target == {"type": "Utilization", "averageUtilization": 70}, f"CPU target from spec.autoscaling: {target}"
