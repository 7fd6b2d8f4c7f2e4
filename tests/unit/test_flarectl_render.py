"""flarectl's intent detail shows how the intent's pods get their GPUs."""

from __future__ import annotations

from rich.console import Console

from flare.v1 import intent_pb2
from flarectl.render import intent_detail
from tests.intents import gpu_job


def rendered(intent: intent_pb2.Intent) -> str:
    console = Console(width=300, record=True)
    for part in intent_detail(intent):
        console.print(part)
    return console.export_text()


def test_the_detail_says_how_the_gpus_are_claimed_and_nothing_before_deploy() -> None:
    intent = gpu_job("train", count=2)
    intent.name = "tenants/acme/intents/train"
    assert "gpu access" not in rendered(intent)
    intent.gpu_access.CopyFrom(
        intent_pb2.GpuAccess(
            method=intent_pb2.GPU_ACCESS_METHOD_RESOURCE_CLAIM,
            gpus_per_pod=2,
            device_class="gpu.nvidia.com",
            claim_template="train-gpus-0123abcd",
            reason="DeviceClass gpu.nvidia.com; 8 GPUs in ResourceSlices of liqo-p",
        )
    )
    line = next(line for line in rendered(intent).splitlines() if "gpu access" in line)
    assert (
        "2 GPUs per pod claimed through DRA from ResourceClaimTemplate train-gpus-0123abcd" in line
    )
