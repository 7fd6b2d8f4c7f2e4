from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controlplane.intents.validation import validate_intent
from flare.v1 import intent_pb2
from tests.intents import SEED_INFERENCE, SEED_TRAINING, gpu_job, intent_from

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def fields(intent: intent_pb2.Intent) -> dict[str, str]:
    return {v.field: v.description for v in validate_intent(intent, now=NOW)}


def test_the_seeds_intents_are_valid() -> None:
    assert fields(intent_from(SEED_INFERENCE)) == {}
    assert fields(intent_from(SEED_TRAINING)) == {}


def test_every_violation_is_reported_at_once_with_its_path() -> None:
    intent = gpu_job("Bad_Name", model="h10", count=-2, location="Mars")
    intent.workload.image = ""
    intent.workload.ports.add(port=70000, domain="x.example")
    intent.workload.env.add(name="1BAD", value="v")
    intent.sla.availability = 120
    found = fields(intent)
    assert set(found) == {
        "intent.workload.name",
        "intent.workload.image",
        "intent.workload.resources.gpu.model",
        "intent.workload.resources.gpu.count",
        "intent.workload.ports[0].port",
        "intent.workload.ports[0].domain",
        "intent.workload.env[0].name",
        "intent.constraints.location",
        "intent.sla.availability",
    }
    assert "nvidia-h100" in found["intent.workload.resources.gpu.model"]
    assert "expose" in found["intent.workload.ports[0].domain"]


def test_missing_required_fields() -> None:
    found = fields(intent_pb2.Intent())
    assert set(found) == {"intent.objective", "intent.workload"}
    assert "Cost_Minimization" in found["intent.objective"]


def test_model_aliases_and_any_are_accepted() -> None:
    for model in ("H100", "nvidia-h100", "A100-80GB", "mi300x", "any", ""):
        assert fields(gpu_job(model=model)) == {}, model


def test_gpu_constraints_that_contradict_the_model() -> None:
    intent = gpu_job(model="nvidia-h100")
    intent.workload.resources.gpu.architecture = "ampere"
    intent.workload.resources.gpu.vendor = "amd"
    found = fields(intent)
    assert "hopper" in found["intent.workload.resources.gpu.architecture"]
    assert "nvidia" in found["intent.workload.resources.gpu.vendor"]


def test_memory_bounds_and_quantities() -> None:
    intent = gpu_job()
    gpu = intent.workload.resources.gpu
    gpu.memory_min, gpu.memory_max = "80Gi", "40Gi"
    intent.workload.resources.memory = "lots"
    found = fields(intent)
    assert set(found) == {
        "intent.workload.resources.gpu.memory_max",
        "intent.workload.resources.memory",
    }


def test_money_currency_and_deadline() -> None:
    intent = gpu_job()
    intent.constraints.max_hourly_cost.amount = "-3"
    intent.constraints.max_hourly_cost.currency_code = "EURO"
    intent.constraints.deadline.FromDatetime(NOW - timedelta(hours=1))
    assert set(fields(intent)) == {
        "intent.constraints.max_hourly_cost.amount",
        "intent.constraints.max_hourly_cost.currency_code",
        "intent.constraints.deadline",
    }


def test_scaling_belongs_to_services_and_batch_to_jobs() -> None:
    job = gpu_job()
    job.workload.scaling.min_replicas = 2
    service = intent_from(SEED_INFERENCE)
    service.workload.batch.parallel_tasks = 2
    assert "intent.workload.scaling" in fields(job)
    assert "intent.workload.batch" in fields(service)


def test_duplicate_env_and_secret_names() -> None:
    intent = intent_from(SEED_INFERENCE)
    intent.workload.secrets.add(name="other", env="MODEL_ID")
    assert fields(intent) == {"intent.workload.secrets[1].env": "'MODEL_ID' is already set"}


def test_a_bid_needs_the_most_it_may_pay() -> None:
    assert fields(gpu_job(bid=True)) == {
        "intent.constraints.bid": "needs max_hourly_cost, the most it may bid"
    }
    assert fields(gpu_job(bid=True, max_hourly_cost="10 EUR")) == {}
