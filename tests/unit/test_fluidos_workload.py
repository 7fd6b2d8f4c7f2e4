"""The workload's Kubernetes objects, from the seeds' intents: GPU limits, the
provider's virtual node, Deployment or Job, ports, volumes and secrets."""

from __future__ import annotations

from typing import Any

from controlplane.federation.fluidos import workload
from flare import dra
from flare.v1 import intent_pb2
from tests.intents import SEED_INFERENCE, SEED_TRAINING, intent_from


def placed(document: dict[str, Any], name: str, gpus: int) -> intent_pb2.Intent:
    intent = intent_from(document)
    intent.name = f"tenants/acme/intents/{name}"
    intent.placement.gpu_model = intent.workload.resources.gpu.model
    intent.placement.nodes.add(node="n", gpu_count=gpus, offer="providers/p/offers/o")
    return intent


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def test_the_inference_service_gets_its_gpu_ports_volume_and_secret() -> None:
    intent = placed(SEED_INFERENCE, "llm", 1)
    objects = by_kind(workload.manifests(intent, "provider-3"))
    assert set(objects) == {"PersistentVolumeClaim", "Deployment", "Service", "Ingress"}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert pod["nodeSelector"] == {workload.REMOTE_CLUSTER_LABEL: "provider-3"}
    assert pod["tolerations"][0]["key"] == workload.VIRTUAL_NODE_TAINT_KEY
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL_ID"]["value"] == "meta-llama/Llama-2-7b-chat-hf"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "huggingface-token"
    assert container["volumeMounts"] == [{"name": "model-cache", "mountPath": "/root/.cache"}]
    assert objects["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert objects["Ingress"]["spec"]["rules"][0]["host"] == "llm-api.mycompany.com"
    assert objects["Service"]["spec"]["ports"][0]["port"] == 8000
    assert workload.endpoint(intent) == "https://llm-api.mycompany.com"


def test_the_training_job_gets_all_four_gpus_in_one_pod() -> None:
    objects = by_kind(workload.manifests(placed(SEED_TRAINING, "train", 4), "provider-2"))
    assert set(objects) == {"Job"}
    job = objects["Job"]["spec"]
    assert job["parallelism"] == 1
    limits = job["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "4"}
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_an_amd_placement_asks_for_amd_gpus() -> None:
    intent = placed(SEED_TRAINING, "mi", 2)
    intent.placement.gpu_model = "amd-mi300x"
    job = by_kind(workload.manifests(intent, "p"))["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "amd.com/gpu": "2"
    }


def test_the_namespace_belongs_to_the_tenant_and_offloads_to_the_contract() -> None:
    space = workload.namespace("tenants/acme/intents/llm", tenant_uid="uid-1")
    assert space["metadata"]["name"] == "flare-acme-llm"
    assert space["metadata"]["labels"][workload.TENANT_LABEL] == "acme"
    assert space["metadata"]["ownerReferences"][0]["kind"] == "Tenant"
    offloading = workload.offloading("flare-acme-llm", "provider-3")
    [term] = offloading["spec"]["clusterSelector"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": workload.REMOTE_CLUSTER_LABEL, "operator": "In", "values": ["provider-3"]}
    ]


def test_long_names_stay_valid_dns_labels() -> None:
    name = workload.resource_name("tenants/" + "t" * 60 + "/intents/" + "i" * 60)
    assert len(name) <= 63 and name.startswith("flare-t")


def test_auto_scaling_gets_an_autoscaler_within_the_intents_bounds() -> None:
    intent = placed(SEED_INFERENCE, "llm", 1)
    intent.workload.scaling.auto_scale = True
    intent.workload.scaling.min_replicas = 1
    intent.workload.scaling.max_replicas = 4
    intent.workload.scaling.target_cpu_percent = 60
    intent.workload.scaling.target_gpu_percent = 80
    autoscaler = by_kind(workload.manifests(intent, "p"))["HorizontalPodAutoscaler"]
    spec = autoscaler["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 4)
    assert spec["scaleTargetRef"]["kind"] == "Deployment"
    assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert autoscaler["metadata"]["annotations"]["flare.fluidos.eu/target-gpu-percent"] == "80"
    fixed = placed(SEED_INFERENCE, "llm", 1)
    assert "HorizontalPodAutoscaler" not in by_kind(workload.manifests(fixed, "p"))


CLAIM = workload.GpuClaim(
    "gpu.nvidia.com",
    ('device.attributes["gpu.nvidia.com"].type == "gpu"',),
    "DeviceClass gpu.nvidia.com; 8 GPUs in ResourceSlices of liqo-p",
)


def test_with_dra_each_pod_claims_its_gpus_from_a_template_instead_of_limits() -> None:
    intent = placed(SEED_TRAINING, "train", 4)
    intent.workload.batch.parallel_tasks = 2
    objects = workload.manifests(intent, "p", CLAIM)
    assert [o["kind"] for o in objects] == ["ResourceClaimTemplate", "Job"]
    template, job = objects
    request = template["spec"]["spec"]["devices"]["requests"][0]
    assert request["name"] == workload.CLAIM
    assert request["exactly"] == {
        "deviceClassName": "gpu.nvidia.com",
        "allocationMode": "ExactCount",
        "count": 2,  # four GPUs over two pods
        "selectors": [{"cel": {"expression": CLAIM.selectors[0]}}],
    }
    assert template["spec"]["metadata"]["labels"][workload.INTENT_LABEL] == "train"
    pod = job["spec"]["template"]["spec"]
    assert pod["resourceClaims"] == [
        {"name": "gpus", "resourceClaimTemplateName": template["metadata"]["name"]}
    ]
    resources = pod["containers"][0]["resources"]
    assert resources["claims"] == [{"name": "gpus"}]
    assert "nvidia.com/gpu" not in resources["limits"]


def test_the_intent_records_how_its_pods_get_their_gpus() -> None:
    intent = placed(SEED_TRAINING, "train", 4)
    claimed = workload.gpu_access(intent, CLAIM)
    assert claimed.method == intent_pb2.GPU_ACCESS_METHOD_RESOURCE_CLAIM
    assert (claimed.device_class, claimed.gpus_per_pod) == ("gpu.nvidia.com", 4)
    assert claimed.claim_template == workload.manifests(intent, "p", CLAIM)[0]["metadata"]["name"]
    assert list(claimed.selectors) == list(CLAIM.selectors)
    assert "claimed through DRA" in dra.describe(claimed)
    limited = workload.gpu_access(intent, None, "no DeviceClass selects gpu.nvidia.com devices")
    assert limited.method == intent_pb2.GPU_ACCESS_METHOD_DEVICE_PLUGIN
    assert limited.resource == "nvidia.com/gpu"
    assert dra.describe(limited) == (
        "4 GPUs per pod as nvidia.com/gpu limits: no DeviceClass selects gpu.nvidia.com devices"
    )


def test_a_claim_that_asks_otherwise_is_a_new_template() -> None:
    intent = placed(SEED_TRAINING, "train", 4)
    other = workload.GpuClaim("gpu.nvidia.com", ("true",), "")
    names = {workload.claim_template(intent, claim) for claim in (CLAIM, other)}
    assert len(names) == 2
    prefix = f"{intent.workload.name}-gpus-"
    assert all(len(name) <= 63 and name.startswith(prefix) for name in names)
    assert workload.claim_template(intent, CLAIM) == workload.claim_template(intent, CLAIM)
