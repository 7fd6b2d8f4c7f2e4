"""Intents used across the tests, built from the seeds' JSON through the dialect."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from flare.dialect import normalize
from flare.v1 import intent_pb2

SEED_INFERENCE: dict[str, Any] = {
    "intent": {
        "objective": "Latency_Minimization",
        "workload": {
            "type": "service",
            "name": "llm-inference",
            "image": "lmsysorg/sglang:latest",
            "commands": ["python3 -m sglang.launch_server --model-path $MODEL_ID --port 8000"],
            "env": ["MODEL_ID=meta-llama/Llama-2-7b-chat-hf", "CUDA_VISIBLE_DEVICES=0"],
            "ports": [
                {"port": 8000, "protocol": "TCP", "expose": True, "domain": "llm-api.mycompany.com"}
            ],
            "resources": {
                "cpu": "4",
                "memory": "16Gi",
                "gpu": {"model": "nvidia-a100", "count": 1, "memory": "40Gi", "tier": "premium"},
            },
            "storage": {
                "volumes": [
                    {
                        "name": "model-cache",
                        "size": "50Gi",
                        "type": "persistent",
                        "path": "/root/.cache",
                    }
                ]
            },
            "secrets": [{"name": "huggingface-token", "env": "HF_TOKEN"}],
        },
        "constraints": {"max_hourly_cost": "5 EUR", "location": "EU", "max_latency_ms": 50},
        "sla": {"availability": "99.9%", "max_interruption_time": "2m"},
    }
}

SEED_TRAINING: dict[str, Any] = {
    "intent": {
        "objective": "Cost_Minimization",
        "workload": {
            "type": "job",
            "name": "gpu-training",
            "image": "pytorch/pytorch:2.1.0-cuda12.1-cudnn8-devel",
            "resources": {"gpu": {"count": 4, "model": "nvidia-a100"}},
        },
    }
}


def intent_from(document: dict[str, Any]) -> intent_pb2.Intent:
    data, violations = normalize(document["intent"], intent_pb2.Intent.DESCRIPTOR)
    assert not violations, violations
    return json_format.ParseDict(data, intent_pb2.Intent())


def gpu_job(
    name: str = "job", *, model: str = "nvidia-a100", count: int = 1, **constraints: Any
) -> intent_pb2.Intent:
    return intent_from(
        {
            "intent": {
                "objective": constraints.pop("objective", "Cost_Minimization"),
                "workload": {
                    "type": "job",
                    "name": name,
                    "image": "busybox:1.36",
                    "resources": {"gpu": {"model": model, "count": count}},
                },
                "constraints": constraints,
            }
        }
    )
