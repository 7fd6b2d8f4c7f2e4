"""Fill a real GPU cluster to saturation with the Alibaba GPU trace (v2023,
"openb"), under three placement policies, and measure how much of it gets used.

Cluster: the GPU nodes of `openb_node_list_all_node.csv` (nodes without GPUs
are left out). GPU models (G1, G2, G3, T4, V100M16, ...) are ignored: no pod
of these lists asks for one (`gpu_spec` is empty in every row of the default
list; multigpu50 has no such column). CPU and memory are not modelled either:
this measures GPU placement only.

Pods: `openb_pod_list_default.csv` in creation order, then, in a fresh
cluster, `openb_pod_list_multigpu50.csv` in file order (it has no times).
A pod with `num_gpu` = k >= 1 and `gpu_milli` = 1000 needs k whole GPUs of
one node; a pod with `num_gpu` = 1 and `gpu_milli` < 1000 needs that many
thousandths of one GPU, which other such pods may share (the free milli of
every GPU is tracked). Pods with `num_gpu` = 0 need no GPU and are left out
(counted). There are no departures: pods are placed in order until
STOP_AFTER consecutive pods find no node, or the list ends.

In these files the multigpu50 list is the default list (same rows, same
order) followed by 909 more pods, mostly of 2, 4 and 8 GPUs; in file order its
replay therefore repeats the default one until the cluster is full, and the
added pods arrive too late to change the result (the JSON records this check).

Policies (the same pods, each in its own empty cluster):
- first-fit: the first node in node-list order that can host the pod;
- best-fit: the node that leaves the least free GPU capacity (free milli of
  the node after placement), ties to node-list order;
- FLARE: `controlplane.placement.planner.plan` with the Cost objective over an
  OfferTable with one offer per node, all at the same price, built once with
  `table.build`; each decision passes its capacity with `with_free`: for a
  whole-GPU pod the number of fully free GPUs per node, for a sharing pod the
  number of GPUs with at least `gpu_milli` free (and gpu_count 1). With equal
  prices the planner's tie-breaks decide: tightest fit (fewest such GPUs left
  on the node), then offer name (= node-list order).
Inside the chosen node, whole-GPU pods take fully free GPUs; a sharing pod
takes the first GPU that fits under first-fit and the GPU with the least free
milli that fits (GPU-level best fit) under best-fit and FLARE.

Reported per (pod list, policy), at the point where placement stopped:
- allocation rate = allocated GPU milli / (GPUs of the cluster x 1000);
- pods placed (and offered, and failed);
- fragmentation = the share of the free GPU milli that sits on nodes that
  could not host the median GPU request. The median request is taken over the
  GPU pods offered until then, each request counted as k x 1000 milli for k
  whole GPUs and `gpu_milli` for a sharing pod. A node can host a request of
  r milli when r < 1000 and one of its GPUs has r milli free, or when r >=
  1000 and it has r / 1000 fully free GPUs. 0 when nothing is free.
- the same at the first pod that found no node, and the fragmentation when
  the allocation first reached 80% and 90% (before saturation, where the
  policies still differ);
- time per decision (median, p99): for FLARE, building the capacity snapshot
  and `plan`; for the baselines, their numpy node choice.

Usage: python benchmarks/trace_replay.py [--data-dir DIR] [--stop-after 100]
Prints a table and writes benchmarks/results/trace_replay.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from controlplane.placement import planner, table
from controlplane.placement.offers import Offer
from controlplane.placement.requirements import Requirements
from flare.v1 import intent_pb2

REPO = Path(__file__).resolve().parents[1]
# The directory holding the trace's CSV files (SOURCE says which): --data-dir or this variable.
DATA_ENV = "FLARE_TRACE_DATA"
RESULTS = Path(__file__).parent / "results" / "trace_replay.json"
NODE_LIST = "openb_node_list_all_node.csv"
POD_LISTS = ("openb_pod_list_default.csv", "openb_pod_list_multigpu50.csv")
SOURCE = {
    "repository": "alibaba/clusterdata",
    "commit": "7a6c496e4f4b6ce6150be8f881cb051bf2abff42",
    "directory": "cluster-trace-gpu-v2023/csv",
    "blobs": {
        NODE_LIST: "86c7043439ef71ceef4ec21c72cde3d331364431",
        "openb_pod_list_default.csv": "bd82505791c723c5b11486ef457fb338529912c0",
        "openb_pod_list_multigpu50.csv": "1bb9c139510c03b4fce2ad39c2a8ba8e73c01a7a",
    },
    "citation": (
        "Weng et al., Beware of Fragmentation: Scheduling GPU-Sharing Workloads with "
        "Fragmentation Gradient Descent, USENIX ATC '23"
    ),
}
WHOLE = 1000  # milli of one GPU
STOP_AFTER = 100
TARGET_UTILISATION = 0.95
LEVELS = (0.8, 0.9)  # allocation levels at which fragmentation is also recorded
NO_GPU = -1  # free milli of a GPU slot that the node does not have

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    gpus: int  # whole GPUs, or 1 for a sharing pod
    milli: int  # per GPU: 1000, or the share of a sharing pod

    @property
    def sharing(self) -> bool:
        return self.milli < WHOLE

    @property
    def request(self) -> int:
        return self.milli if self.sharing else self.gpus * WHOLE


@dataclass(frozen=True, slots=True)
class Nodes:
    names: tuple[str, ...]
    models: tuple[str, ...]
    gpus: Ints


def load_nodes(path: Path) -> Nodes:
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["gpu"]) > 0]
    return Nodes(
        tuple(row["sn"] for row in rows),
        tuple(row["model"] for row in rows),
        np.asarray([int(row["gpu"]) for row in rows], dtype=np.int64),
    )


def load_pods(path: Path) -> tuple[list[Pod], int]:
    """GPU pods in creation order (file order without times), and how many
    pods need no GPU."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "creation_time" in rows[0]:
        rows.sort(key=lambda row: int(row["creation_time"]))  # stable: file order on ties
    pods, cpu_only = [], 0
    for row in rows:
        gpus, milli = int(row["num_gpu"]), int(row["gpu_milli"])
        if gpus == 0:
            cpu_only += 1
            continue
        if milli < WHOLE and gpus != 1:
            raise ValueError(f"{row['name']}: {gpus} GPUs of {milli} milli each")
        pods.append(Pod(row["name"], gpus, min(milli, WHOLE)))
    return pods, cpu_only


class Cluster:
    """Free milli per GPU slot (NO_GPU where a node has fewer GPUs), with
    per-node aggregates kept up to date."""

    def __init__(self, gpus: Ints) -> None:
        slots = np.arange(int(gpus.max()))
        self.free: Ints = np.where(slots[None, :] < gpus[:, None], WHOLE, NO_GPU).astype(np.int64)
        self.total_milli = int(gpus.sum()) * WHOLE
        self.full: Ints = gpus.copy()  # fully free GPUs per node
        self.node_free: Ints = gpus * WHOLE  # free milli per node

    def allocated(self) -> int:
        return self.total_milli - int(self.node_free.sum())

    def fits(self, pod: Pod) -> npt.NDArray[np.bool_]:
        if pod.sharing:
            result: npt.NDArray[np.bool_] = self.free.max(axis=1) >= pod.milli
            return result
        fits: npt.NDArray[np.bool_] = self.full >= pod.gpus
        return fits

    def place(self, node: int, pod: Pod, *, best_gpu: bool) -> None:
        row = self.free[node]
        if pod.sharing:
            fitting = np.flatnonzero(row >= pod.milli)
            gpu = int(fitting[np.argmin(row[fitting])]) if best_gpu else int(fitting[0])
            row[gpu] -= pod.milli
        else:
            taken = np.flatnonzero(row == WHOLE)[: pod.gpus]
            if taken.size < pod.gpus:
                raise AssertionError(f"node {node} has no {pod.gpus} free GPUs")
            row[taken] = 0
        self.full[node] = int((row == WHOLE).sum())
        self.node_free[node] = int(row[row > 0].sum())

    def fragmentation(self, median_request: float) -> float:
        free = int(self.node_free.sum())
        if free == 0:
            return 0.0
        if median_request < WHOLE:
            can_host = self.free.max(axis=1) >= median_request
        else:
            can_host = self.full >= int(np.ceil(median_request / WHOLE))
        return float(self.node_free[~can_host].sum()) / free


Chooser = Callable[[Cluster, Pod], int]  # node index, or -1


def first_fit(cluster: Cluster, pod: Pod) -> int:
    fits = cluster.fits(pod)
    return int(np.argmax(fits)) if fits.any() else -1


def best_fit(cluster: Cluster, pod: Pod) -> int:
    fits = cluster.fits(pod)
    if not fits.any():
        return -1
    left = np.where(fits, cluster.node_free - pod.request, np.iinfo(np.int64).max)
    return int(np.argmin(left))


class Flare:
    """The real planner, choosing a node per pod over one OfferTable."""

    def __init__(self, nodes: Nodes) -> None:
        offers = [
            Offer(
                name=f"providers/openb/offers/{name}",
                provider="openb",
                cluster="openb",
                node=name,
                gpu_model=model.lower(),
                gpu_vendor="",
                gpu_architecture="",
                gpu_memory_gib=0.0,
                compute_capability="",
                tier="",
                interconnect="",
                topology="",
                fp32_tflops=0.0,
                fp16_tflops=0.0,
                tdp_watts=0,
                gpus_total=int(count),
                gpus_free=int(count),
                region="",
                country="",
                continent="",
                zone="",
                price_per_gpu_hour=Decimal(1),
                currency="EUR",
                preemptible=False,
                latency_ms=0,
                availability=100.0,
                carbon_intensity_g_per_kwh=0.0,
            )
            for name, model, count in zip(nodes.names, nodes.models, nodes.gpus, strict=True)
        ]
        self.table = table.build(offers)
        self.index = {offer.name: i for i, offer in enumerate(self.table.offers)}

    def __call__(self, cluster: Cluster, pod: Pod) -> int:
        if pod.sharing:
            free: Ints = (cluster.free >= pod.milli).sum(axis=1).astype(np.int64)
            req = Requirements(gpu_count=1)
        else:
            free = cluster.full.copy()
            req = Requirements(gpu_count=pod.gpus)
        result = planner.plan(
            req,
            self.table.with_free(free),
            intent_pb2.OBJECTIVE_COST_MINIMIZATION,
            top_k=1,
            alternatives=False,
            gangs=False,
        )
        best = result.best
        return -1 if best is None else self.index[best.offer.name]


@dataclass(frozen=True, slots=True)
class Replay:
    pod_list: str
    policy: str
    pods_offered: int
    pods_placed: int
    pods_failed: int
    stopped: str
    allocation_rate: float
    fragmentation: float
    median_request_milli: float
    fully_free_gpus: int
    first_failure_at: int | None  # pods offered when the first one found no node
    allocation_at_first_failure: float | None
    fragmentation_at_first_failure: float | None
    # allocation level -> fragmentation when the cluster first reached it
    fragmentation_when_allocated: dict[str, float]
    decision_ms_median: float
    decision_ms_p99: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in self.__slots__}
        row["target_reached"] = self.allocation_rate >= TARGET_UTILISATION
        return row


def replay(
    pod_list: str,
    policy: str,
    choose: Chooser,
    nodes: Nodes,
    pods: Sequence[Pod],
    *,
    stop_after: int,
) -> Replay:
    cluster = Cluster(nodes.gpus)
    best_gpu = policy != "first-fit"
    timings: list[float] = []
    requests: list[int] = []
    placed = failed = streak = 0
    first_failure: tuple[int, float, float] | None = None
    levels: dict[str, float] = {}
    stopped = "list ended"
    started = time.perf_counter()
    for pod in pods:
        requests.append(pod.request)
        begin = time.perf_counter_ns()
        node = choose(cluster, pod)
        timings.append((time.perf_counter_ns() - begin) / 1e6)
        if node < 0:
            if first_failure is None:
                first_failure = (
                    len(requests),
                    round(cluster.allocated() / cluster.total_milli, 4),
                    round(cluster.fragmentation(float(np.median(requests))), 4),
                )
            failed += 1
            streak += 1
            if streak >= stop_after:
                stopped = f"{stop_after} consecutive pods failed"
                break
            continue
        streak = 0
        cluster.place(node, pod, best_gpu=best_gpu)
        placed += 1
        for level in LEVELS:
            key = f"{level:.2f}"
            if key not in levels and cluster.allocated() >= level * cluster.total_milli:
                levels[key] = round(cluster.fragmentation(float(np.median(requests))), 4)
    elapsed = time.perf_counter() - started
    median_request = float(np.median(requests)) if requests else 0.0
    return Replay(
        pod_list=pod_list,
        policy=policy,
        pods_offered=len(requests),
        pods_placed=placed,
        pods_failed=failed,
        stopped=stopped,
        allocation_rate=round(cluster.allocated() / cluster.total_milli, 4),
        fragmentation=round(cluster.fragmentation(median_request), 4),
        median_request_milli=median_request,
        fully_free_gpus=int(cluster.full.sum()),
        first_failure_at=first_failure[0] if first_failure else None,
        allocation_at_first_failure=first_failure[1] if first_failure else None,
        fragmentation_at_first_failure=first_failure[2] if first_failure else None,
        fragmentation_when_allocated=levels,
        decision_ms_median=round(float(np.median(timings)), 4),
        decision_ms_p99=round(float(np.percentile(timings, 99)), 4),
        seconds=round(elapsed, 2),
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_table(results: Sequence[Replay], nodes: Nodes) -> None:
    print(
        f"cluster: {len(nodes.names)} GPU nodes, {int(nodes.gpus.sum())} GPUs; "
        f"stop after {STOP_AFTER} consecutive failures"
    )
    header = (
        f"{'pod list':<30}{'policy':<11}{'offered':>8}{'placed':>8}{'alloc':>7}{'frag':>7}"
        f"{'1st fail':>9}{'alloc':>7}{'frag':>7}{'frag@90%':>9}{'decision ms':>13}  stopped"
    )
    print(f"{'':<57}{'at the stop':<14}{'at the first failure':<23}{'median/p99':>11}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.pod_list:<30}{r.policy:<11}{r.pods_offered:>8}{r.pods_placed:>8}"
            f"{r.allocation_rate:>7.1%}{r.fragmentation:>7.1%}"
            f"{r.first_failure_at or '-':>9}{_percent(r.allocation_at_first_failure):>7}"
            f"{_percent(r.fragmentation_at_first_failure):>7}"
            f"{_percent(r.fragmentation_when_allocated.get('0.90')):>9}"
            f"{r.decision_ms_median:>7.3f}/{r.decision_ms_p99:<5.3f}  {r.stopped}"
        )
    for policy in dict.fromkeys(r.policy for r in results):
        worst = min(r.allocation_rate for r in results if r.policy == policy)
        verdict = "reached" if worst >= TARGET_UTILISATION else "NOT reached"
        print(
            f"target {TARGET_UTILISATION:.0%} GPU allocation at saturation, {policy}: {verdict} "
            f"(lowest over the pod lists {worst:.1%})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get(DATA_ENV),
        help=f"the trace's csv/ directory (default: ${DATA_ENV})",
    )
    parser.add_argument("--stop-after", type=int, default=STOP_AFTER)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error(f"give --data-dir or set {DATA_ENV}: the directory of the trace's CSV files")
    nodes = load_nodes(args.data_dir / NODE_LIST)
    flare = Flare(nodes)
    policies: list[tuple[str, Chooser]] = [
        ("first-fit", first_fit),
        ("best-fit", best_fit),
        ("FLARE", flare),
    ]
    results: list[Replay] = []
    cpu_only: dict[str, int] = {}
    lists: dict[str, list[Pod]] = {}
    for pod_list in POD_LISTS:
        pods, cpu_only[pod_list] = load_pods(args.data_dir / pod_list)
        lists[pod_list] = pods
        for policy, choose in policies:
            results.append(
                replay(pod_list, policy, choose, nodes, pods, stop_after=args.stop_after)
            )
    print_table(results, nodes)
    report = {
        "benchmark": "trace_replay",
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "system": platform.system(),
        },
        "settings": {
            "stop_after_consecutive_failures": args.stop_after,
            "gpu_nodes": len(nodes.names),
            "gpus": int(nodes.gpus.sum()),
            "pods_without_gpu_left_out": cpu_only,
            "multigpu50_starts_with_the_default_list": lists[POD_LISTS[1]][
                : len(lists[POD_LISTS[0]])
            ]
            == lists[POD_LISTS[0]],
            "gpu_models": "ignored (no pod asks for one)",
            "cpu_and_memory": "not modelled",
            "flare": "planner.plan, Cost objective, equal prices, top_k=1, no gangs",
        },
        "target": {"allocation_rate": TARGET_UTILISATION},
        "data": {**SOURCE, "files": [NODE_LIST, *POD_LISTS]},
        "results": [r.as_dict() for r in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    shown = args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
