"""The Kubernetes objects that run an intent's workload on the provider a
Contract bought: a namespace under the tenant's Capsule Tenant, a Liqo
NamespaceOffloading to the provider's cluster, PersistentVolumeClaims, the
Deployment (service) or Job (job) with its GPUs — which the earlier FLARE
left out, so its pods never got the GPUs they paid for — and a Service and
Ingress for the exposed ports. Pure functions from the intent to manifests.

GPUs are asked for in one of two ways. Where the cluster that schedules the pods
offers the vendor's DRA DeviceClass and devices for the provider, each pod gets a
ResourceClaim from a ResourceClaimTemplate: an exact count of whole GPUs and CEL
selectors for the placed model, the memory bounds, the architecture and the compute
capability, so the scheduler itself gives only GPUs that fit. Otherwise the pods
set the vendor's extended resource (`nvidia.com/gpu`) as limits.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
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
DRA_API = "resource.k8s.io/v1"
CLAIM = "gpus"  # the pod's claim and its one device request
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


@dataclass(frozen=True, slots=True)
class GpuClaim:
    """DRA for an intent's pods: the DeviceClass to ask and the CEL selectors every GPU
    must satisfy (see flare.dra.selectors), and why the cluster allows it."""

    device_class: str
    selectors: tuple[str, ...]
    reason: str


def vendor(intent: intent_pb2.Intent) -> str:
    """The vendor of the placed GPUs ("nvidia" when the placement does not say)."""
    placed = intent.placement.gpu_model.split("-", 1)[0]
    return placed if placed in GPU_RESOURCES else "nvidia"


def pod_count(intent: intent_pb2.Intent) -> int:
    workload = intent.workload
    if workload.type == intent_pb2.WORKLOAD_TYPE_JOB:
        return max(1, workload.batch.parallel_tasks)
    return max(1, workload.scaling.min_replicas)


def gpus_per_pod(intent: intent_pb2.Intent) -> int:
    gpu_count = sum(n.gpu_count for n in intent.placement.nodes) or (
        intent.workload.resources.gpu.count
    )
    return max(1, gpu_count // pod_count(intent)) if gpu_count else 0


def claim_template(intent: intent_pb2.Intent, claim: GpuClaim) -> str:
    """The template's name: the workload's, and a digest of what it asks, so a claim
    that asks otherwise (another DeviceClass, count or selector) is a new template."""
    asked = json.dumps([claim.device_class, gpus_per_pod(intent), claim.selectors])
    digest = hashlib.sha256(asked.encode()).hexdigest()[:8]
    base = f"{_dns_label(intent.workload.name) or 'workload'}-{CLAIM}"
    return f"{base[: _MAX_NAME - 9].rstrip('-')}-{digest}"


def gpu_access(
    intent: intent_pb2.Intent, claim: GpuClaim | None, reason: str = ""
) -> intent_pb2.GpuAccess:
    """How the pods of `manifests(intent, _, claim)` get their GPUs, for the intent."""
    per_pod = gpus_per_pod(intent)
    if claim is None:
        return intent_pb2.GpuAccess(
            method=intent_pb2.GPU_ACCESS_METHOD_DEVICE_PLUGIN,
            gpus_per_pod=per_pod,
            resource=GPU_RESOURCES[vendor(intent)],
            reason=reason,
        )
    return intent_pb2.GpuAccess(
        method=intent_pb2.GPU_ACCESS_METHOD_RESOURCE_CLAIM,
        gpus_per_pod=per_pod,
        device_class=claim.device_class,
        claim_template=claim_template(intent, claim),
        selectors=claim.selectors,
        reason=claim.reason,
    )


def _container(
    intent: intent_pb2.Intent, claim: GpuClaim | None, gpus_per_pod: int
) -> dict[str, Any]:
    workload = intent.workload
    resources = workload.resources
    requests: dict[str, str] = {}
    if resources.cpu:
        requests["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = resources.memory
    limits = dict(requests)
    container_resources: dict[str, Any] = {"requests": requests, "limits": limits}
    if gpus_per_pod and claim is None:
        # Extended resources are set as limits (requests follow them).
        limits[GPU_RESOURCES[vendor(intent)]] = str(gpus_per_pod)
    elif gpus_per_pod:
        container_resources["claims"] = [{"name": CLAIM}]
    container: dict[str, Any] = {
        "name": _dns_label(workload.name) or "workload",
        "image": workload.image,
        "resources": container_resources,
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
    intent: intent_pb2.Intent, liqo_id: str, claim: GpuClaim | None, restart: str
) -> dict[str, Any]:
    per_pod = gpus_per_pod(intent)
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "containers": [_container(intent, claim, per_pod)],
        "volumes": _volumes(intent),
        # What Liqo's webhook adds for an offloaded namespace, stated here so the pods land on
        # the contracted provider even where no webhook runs.
        "nodeSelector": {REMOTE_CLUSTER_LABEL: liqo_id},
        "tolerations": [
            {"key": VIRTUAL_NODE_TAINT_KEY, "operator": "Exists", "effect": "NoExecute"}
        ],
    }
    if claim is not None and per_pod:
        spec["resourceClaims"] = [
            {"name": CLAIM, "resourceClaimTemplateName": claim_template(intent, claim)}
        ]
    return spec


def _claim_template(
    intent: intent_pb2.Intent, claim: GpuClaim, namespace_name: str, labels: dict[str, str]
) -> dict[str, Any]:
    """Each pod's claim: exactly its share of whole GPUs of the DeviceClass that fit."""
    return {
        "apiVersion": DRA_API,
        "kind": "ResourceClaimTemplate",
        "metadata": {
            "name": claim_template(intent, claim),
            "namespace": namespace_name,
            "labels": labels,
        },
        "spec": {
            "metadata": {"labels": labels},
            "spec": {
                "devices": {
                    "requests": [
                        {
                            "name": CLAIM,
                            "exactly": {
                                "deviceClassName": claim.device_class,
                                "allocationMode": "ExactCount",
                                "count": gpus_per_pod(intent),
                                "selectors": [
                                    {"cel": {"expression": expression}}
                                    for expression in claim.selectors
                                ],
                            },
                        }
                    ]
                }
            },
        },
    }


def provider_label(intent: intent_pb2.Intent) -> str:
    return _dns_label(intent.placement.provider) or "unplaced"


def manifests(
    intent: intent_pb2.Intent, liqo_id: str, claim: GpuClaim | None = None
) -> list[dict[str, Any]]:
    """Every object of the workload, in the order they are created; `claim`: the pods
    claim their GPUs through DRA, else they set GPU limits."""
    workload = intent.workload
    space = resource_name(intent.name)
    _, intent_id = ids(intent.name)
    name = _dns_label(workload.name) or "workload"
    labels = {INTENT_LABEL: intent_id, "app.kubernetes.io/name": name}
    pod_labels = {**labels, PROVIDER_LABEL: provider_label(intent)}
    out: list[dict[str, Any]] = []
    if claim is not None and gpus_per_pod(intent):
        out.append(_claim_template(intent, claim, space, labels))
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
        parallel = pod_count(intent)
        job_spec: dict[str, Any] = {
            "parallelism": parallel,
            "completions": 1
            if batch.completion_policy == intent_pb2.COMPLETION_POLICY_ANY
            else parallel,
            "backoffLimit": batch.max_retries if workload.HasField("batch") else 3,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": _pod_spec(intent, liqo_id, claim, "Never"),
            },
        }
        if batch.HasField("timeout"):
            job_spec["activeDeadlineSeconds"] = int(batch.timeout.ToTimedelta().total_seconds())
        out.append(
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
        )
    else:
        replicas = pod_count(intent)
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
                        "spec": _pod_spec(intent, liqo_id, claim, "Always"),
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
