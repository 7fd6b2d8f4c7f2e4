"""Cluster mode on the harness. `namespace` (a fresh one per test) is where the
FlareIntent and FlareToken objects and the Lease live."""

from tests.k8s.conftest import api, namespace

__all__ = ["api", "namespace"]
