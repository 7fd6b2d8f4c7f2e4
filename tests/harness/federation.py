"""A FLUIDOS-style federation of test clusters: one consumer and N providers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Self

from tests.harness.cluster import Cluster, Options
from tests.harness.tools import Tools

CONSUMER = "consumer"


def provider_name(index: int) -> str:
    return f"provider-{index + 1}"


class Federation:
    """One consumer and `providers` provider clusters, started side by side and stopped
    together; if one fails to start, all are stopped."""

    def __init__(self, tools: Tools, providers: int = 2, options: Options | None = None) -> None:
        if providers < 0:
            raise ValueError("providers must be >= 0")
        self.consumer = Cluster(CONSUMER, tools, options)
        self.providers = [Cluster(provider_name(i), tools, options) for i in range(providers)]

    @property
    def clusters(self) -> list[Cluster]:
        return [self.consumer, *self.providers]

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def start(self) -> Self:
        clusters = self.clusters
        try:
            with ThreadPoolExecutor(len(clusters), thread_name_prefix="cluster") as pool:
                for future in [pool.submit(cluster.start) for cluster in clusters]:
                    future.result()
        except BaseException:
            # Leaving the pool waited for every start to end; now stop those that succeeded.
            self.stop()
            raise
        return self

    def stop(self) -> None:
        clusters = self.clusters
        with ThreadPoolExecutor(len(clusters), thread_name_prefix="cluster") as pool:
            list(pool.map(Cluster.stop, clusters))

    def rss_bytes(self) -> int:
        return sum(cluster.rss_bytes() for cluster in self.clusters)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
