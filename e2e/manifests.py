"""Files and objects the control plane needs: kubeconfig, token file, kwok and Prometheus config, Nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

# The five kwok stages kwokctl injects by default (paths inside kwok's kustomize/stage).
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
POD_CIDR = "10.244.0.0/16"
# kwok renews each node Lease every quarter of this; kube-controller-manager's
# --node-monitor-grace-period must be well above that renew interval.
NODE_LEASE_SECONDS = 40


def kubeconfig(server: str, token: str, user: str = "admin", cluster: str = "rollguard-e2e") -> dict[str, Any]:
    """A kubeconfig with token auth; TLS is not verified (the apiserver's cert is self-signed)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": user}}],
        "current-context": f"{user}@{cluster}",
    }


def write_yaml(path: Path, *documents: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def token_file(users: list[tuple[str, str, list[str]]]) -> str:
    """kube-apiserver --token-auth-file lines: ``token,user,uid[,"group1,group2"]``."""
    lines = []
    for token, user, groups in users:
        line = f"{token},{user},{user}-uid"
        if groups:
            line += ',"' + ",".join(groups) + '"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def kwok_config(stage_dir: Path) -> str:
    """One --config file for kwok: its options, then the five Stage objects (it refuses to run without)."""
    options = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "cidr": POD_CIDR,
            "manageAllNodes": False,
            "manageNodesWithAnnotationSelector": f"{KWOK_NODE_ANNOTATION}=fake",
            "nodeLeaseDurationSeconds": NODE_LEASE_SECONDS,
            # kwok applies its defaults only when no KwokConfiguration is given, so set them here
            # (without nodeLeaseParallelism it exits: "node leases parallelism must be greater than 0").
            "podPlayStageParallelism": 4,
            "nodePlayStageParallelism": 4,
            "nodeLeaseParallelism": 4,
            "podsOnNodeSyncParallelism": 1,
            "enablePodsOnNodeSyncListPager": True,
        },
    }
    parts = [yaml.safe_dump(options, sort_keys=False)]
    for stage in KWOK_STAGES:
        path = stage_dir / stage
        if not path.is_file():
            raise FileNotFoundError(f"kwok stage {path} is missing; re-run e2e/build-control-plane.sh")
        parts.append(path.read_text())
    return "\n---\n".join(parts)


def fake_node(name: str, zone: str) -> client.V1Node:
    """A Node that kwok manages (no taint, so pods schedule without tolerations)."""
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "node-role.kubernetes.io/worker": "",
                "topology.kubernetes.io/zone": zone,
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": capacity,
            "capacity": capacity,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "bootID": "",
                "containerRuntimeVersion": "",
                "kernelVersion": "",
                "machineID": "",
                "osImage": "",
                "systemUUID": "",
            },
            "phase": "Running",
        },
    }
    node = client.V1Node.from_dict(body)
    assert node is not None
    return node


def prometheus_config(targets_file: Path, scrape_seconds: int = 1) -> dict[str, Any]:
    """Scrape every `scrape_seconds` whatever ``targets_file`` lists (file_sd; reloaded when it changes)."""
    every = f"{scrape_seconds}s"
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every, "scrape_timeout": every},
        "scrape_configs": [
            {
                "job_name": "e2e",
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
            }
        ],
    }
