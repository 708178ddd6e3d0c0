"""Names, labels and revision hashes shared by builders, the operator and the simulator."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rollguard.api.spec import ModelDeploymentSpec

GROUP = "rollguard.io"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
FIELD_MANAGER = "rollguard"

LABEL_MD = "rollguard.io/model-deployment"
LABEL_MODEL = "rollguard.io/model"
LABEL_VERSION = "rollguard.io/version"
LABEL_ROLLOUT_ID = "rollguard.io/rollout-id"
LABEL_ROLE = "rollguard.io/role"
# On the fallback's pods instead of LABEL_MD: the model's Services select them only while the fallback is active.
LABEL_FALLBACK = "rollguard.io/fallback-for"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"

ANNOTATION_PREFIX = "rollguard.io/"


def template_of(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The part of the spec that defines what a pod runs; a change here is a new revision."""
    return {
        "model": spec.model.model_dump(mode="json", by_alias=True, exclude_none=True),
        "runtime": spec.runtime.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def revision_of(template: dict[str, Any]) -> str:
    """A short, stable hash of a revision's template; also its rollout id."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def deployment_name(md_name: str, revision: str) -> str:
    return f"{md_name}-{revision}"


def role_service_name(md_name: str, role: str) -> str:
    return f"{md_name}-{role}"


def fallback_name(md_name: str) -> str:
    """The warm fallback's Deployment (a revision's is <name>-<10 hex>, so the names never meet)."""
    return f"{md_name}-fallback"


def selector_labels(md_name: str) -> dict[str, str]:
    return {LABEL_MD: md_name}
