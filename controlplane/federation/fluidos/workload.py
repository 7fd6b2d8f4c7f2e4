"""The Kubernetes objects that run an intent's workload on the provider a
Contract bought: a namespace under the tenant's Capsule Tenant, a Liqo
NamespaceOffloading to the provider's cluster, PersistentVolumeClaims, the
Deployment (service) or Job (job) with GPU limits — which the earlier FLARE
left out, so its pods never got the GPUs they paid for — and a Service and
Ingress for the exposed ports. Pure functions from the intent to manifests.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from flare.v1 import intent_pb2

INTENT_LABEL = "flare.fluidos.eu/intent"
# On pods: the provider they were placed for, so pods of an earlier placement never count.
PROVIDER_LABEL = "flare.fluidos.eu/provider"
TENANT_LABEL = "capsule.clastix.io/tenant"
REMOTE_CLUSTER_LABEL = "liqo.io/remote-cluster-id"
VIRTUAL_NODE_TAINT_KEY = "virtual-node.liqo.io/not-allowed"
LIQO_OFFLOADING_GROUP = "offloading.liqo.io"
LIQO_OFFLOADING_VERSION = "v1beta1"  # Liqo v1.0
GPU_RESOURCES = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}
_MAX_NAME = 63


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")
    if len(label) <= _MAX_NAME:
        return label
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{label[: _MAX_NAME - 9].rstrip('-')}-{digest}"


def ids(intent_name: str) -> tuple[str, str]:
    """(tenant, intent id) of "tenants/{tenant}/intents/{id}"."""
    _, tenant, _, intent_id = intent_name.split("/")
    return tenant, intent_id


def resource_name(intent_name: str) -> str:
    """The name of the intent's FLUIDOS resources and namespace: `flare-<tenant>-<id>`."""
    tenant, intent_id = ids(intent_name)
    return _dns_label(f"flare-{tenant}-{intent_id}")


def namespace(intent_name: str, tenant_uid: str = "") -> dict[str, Any]:
    tenant, intent_id = ids(intent_name)
    metadata: dict[str, Any] = {
        "name": resource_name(intent_name),
        "labels": {TENANT_LABEL: tenant, INTENT_LABEL: intent_id},
    }
    if tenant_uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "capsule.clastix.io/v1beta2",
                "kind": "Tenant",
                "name": tenant,
                "uid": tenant_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def tenant(name: str) -> dict[str, Any]:
    """A Capsule Tenant owned by the tenant's FLARE service account."""
    return {
        "apiVersion": "capsule.clastix.io/v1beta2",
        "kind": "Tenant",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "flare"}},
        "spec": {
            "owners": [{"kind": "ServiceAccount", "name": f"system:serviceaccount:flare:{name}"}]
        },
    }


def offloading(namespace_name: str, liqo_id: str) -> dict[str, Any]:
    """Offload the namespace's pods to the provider cluster `liqo_id` only."""
    return {
        "apiVersion": f"{LIQO_OFFLOADING_GROUP}/{LIQO_OFFLOADING_VERSION}",
        "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": namespace_name},
        "spec": {
            "namespaceMappingStrategy": "DefaultName",
            "podOffloadingStrategy": "Remote",
            "clusterSelector": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": REMOTE_CLUSTER_LABEL, "operator": "In", "values": [liqo_id]}
                        ]
                    }
                ]
            },
        },
    }


def _container(intent: intent_pb2.Intent, gpu_resource: str, gpus_per_pod: int) -> dict[str, Any]:
    workload = intent.workload
    resources = workload.resources
    requests: dict[str, str] = {}
    if resources.cpu:
        requests["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = resources.memory
    limits = dict(requests)
    if gpus_per_pod:
        # Extended resources are set as limits (requests follow them).
        limits[gpu_resource] = str(gpus_per_pod)
    container: dict[str, Any] = {
        "name": _dns_label(workload.name) or "workload",
        "image": workload.image,
        "resources": {"requests": requests, "limits": limits},
        "env": [{"name": e.name, "value": e.value} for e in workload.env],
    }
    for secret in workload.secrets:
        env_name = secret.env or re.sub(r"[^A-Z0-9_]", "_", secret.name.upper())
        container["env"].append(
            {
                "name": env_name,
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": env_name}},
            }
        )
    if workload.commands:
        container["command"] = ["/bin/sh", "-c", " && ".join(workload.commands)]
    if workload.ports:
        container["ports"] = [
            {
                "containerPort": p.port,
                "protocol": "UDP" if p.protocol == intent_pb2.PROTOCOL_UDP else "TCP",
            }
            for p in workload.ports
        ]
    mounts = [{"name": _dns_label(v.name), "mountPath": v.path} for v in workload.storage.volumes]
    if mounts:
        container["volumeMounts"] = mounts
    return container


def _volumes(intent: intent_pb2.Intent) -> list[dict[str, Any]]:
    volumes = []
    for volume in intent.workload.storage.volumes:
        name = _dns_label(volume.name)
        if volume.type == intent_pb2.VOLUME_TYPE_TEMPORARY:
            source: dict[str, Any] = {"emptyDir": {"sizeLimit": volume.size} if volume.size else {}}
        else:
            source = {"persistentVolumeClaim": {"claimName": name}}
        volumes.append({"name": name, **source})
    return volumes


def _pod_spec(
    intent: intent_pb2.Intent, liqo_id: str, gpu_resource: str, gpus_per_pod: int, restart: str
) -> dict[str, Any]:
    return {
        "restartPolicy": restart,
        "containers": [_container(intent, gpu_resource, gpus_per_pod)],
        "volumes": _volumes(intent),
        # What Liqo's webhook adds for an offloaded namespace, stated here so the pods land on
        # the contracted provider even where no webhook runs.
        "nodeSelector": {REMOTE_CLUSTER_LABEL: liqo_id},
        "tolerations": [
            {"key": VIRTUAL_NODE_TAINT_KEY, "operator": "Exists", "effect": "NoExecute"}
        ],
    }


def provider_label(intent: intent_pb2.Intent) -> str:
    return _dns_label(intent.placement.provider) or "unplaced"


def manifests(intent: intent_pb2.Intent, liqo_id: str) -> list[dict[str, Any]]:
    """Every object of the workload, in the order they are created."""
    workload = intent.workload
    space = resource_name(intent.name)
    _, intent_id = ids(intent.name)
    name = _dns_label(workload.name) or "workload"
    labels = {INTENT_LABEL: intent_id, "app.kubernetes.io/name": name}
    pod_labels = {**labels, PROVIDER_LABEL: provider_label(intent)}
    vendor = intent.placement.gpu_model.split("-", 1)[0]
    gpu_resource = GPU_RESOURCES.get(vendor, GPU_RESOURCES["nvidia"])
    gpu_count = sum(n.gpu_count for n in intent.placement.nodes) or workload.resources.gpu.count
    out: list[dict[str, Any]] = []
    for volume in workload.storage.volumes:
        if volume.type == intent_pb2.VOLUME_TYPE_TEMPORARY:
            continue
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": _dns_label(volume.name), "namespace": space, "labels": labels},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": volume.size or "1Gi"}},
                },
            }
        )
    metadata = {"name": name, "namespace": space, "labels": labels}
    if workload.type == intent_pb2.WORKLOAD_TYPE_JOB:
        batch = workload.batch
        parallel = max(1, batch.parallel_tasks)
        per_pod = max(1, gpu_count // parallel) if gpu_count else 0
        job_spec: dict[str, Any] = {
            "parallelism": parallel,
            "completions": 1
            if batch.completion_policy == intent_pb2.COMPLETION_POLICY_ANY
            else parallel,
            "backoffLimit": batch.max_retries if workload.HasField("batch") else 3,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": _pod_spec(intent, liqo_id, gpu_resource, per_pod, "Never"),
            },
        }
        if batch.HasField("timeout"):
            job_spec["activeDeadlineSeconds"] = int(batch.timeout.ToTimedelta().total_seconds())
        out.append(
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
        )
    else:
        replicas = max(1, workload.scaling.min_replicas)
        per_pod = max(1, gpu_count // replicas) if gpu_count else 0
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": metadata,
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": pod_labels},
                        "spec": _pod_spec(intent, liqo_id, gpu_resource, per_pod, "Always"),
                    },
                },
            }
        )
    scaling = workload.scaling
    if workload.type != intent_pb2.WORKLOAD_TYPE_JOB and scaling.auto_scale:
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": scaling.target_cpu_percent or 70,
                },
            },
        }
        autoscaler: dict[str, Any] = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": dict(metadata),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": max(1, scaling.min_replicas),
                "maxReplicas": max(1, scaling.min_replicas, scaling.max_replicas),
                "metrics": [metric],
            },
        }
        if scaling.target_gpu_percent:
            # GPU utilisation reaches an HPA only through a custom-metrics adapter (e.g.
            # DCGM's metrics via prometheus-adapter); the target is recorded for it.
            autoscaler["metadata"]["annotations"] = {
                "flare.fluidos.eu/target-gpu-percent": str(scaling.target_gpu_percent)
            }
        out.append(autoscaler)
    exposed = [p for p in workload.ports if p.expose]
    if workload.ports:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata,
                "spec": {
                    "selector": labels,
                    "ports": [
                        {
                            "name": f"port-{p.port}",
                            "port": p.port,
                            "targetPort": p.port,
                            "protocol": "UDP" if p.protocol == intent_pb2.PROTOCOL_UDP else "TCP",
                        }
                        for p in workload.ports
                    ],
                },
            }
        )
    domains = [p for p in exposed if p.domain]
    if domains:
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": metadata,
                "spec": {
                    "rules": [
                        {
                            "host": p.domain,
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": name, "port": {"number": p.port}}
                                        },
                                    }
                                ]
                            },
                        }
                        for p in domains
                    ]
                },
            }
        )
    return out


def endpoint(intent: intent_pb2.Intent) -> str:
    """Where the workload answers: the first exposed port's domain, else its Service."""
    for port in intent.workload.ports:
        if port.expose:
            if port.domain:
                return f"https://{port.domain}"
            name = _dns_label(intent.workload.name) or "workload"
            return f"http://{name}.{resource_name(intent.name)}.svc:{port.port}"
    return ""
