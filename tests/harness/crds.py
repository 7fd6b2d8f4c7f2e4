"""Installing CustomResourceDefinitions from YAML manifests and waiting until they are served."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.harness.waiting import wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FIELD_MANAGER = "flare-test-harness"
ESTABLISH_TIMEOUT = 60.0


def load_crds(files: Iterable[Path]) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in `files`, in order."""
    crds: list[dict[str, Any]] = []
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                crds.append(document)
    return crds


def is_established(crd: Mapping[str, Any]) -> bool:
    """Whether a CRD object's status says it is Established (its API is served)."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def install_crds(
    api_client: ApiClient, crds: Iterable[dict[str, Any]], timeout: float = ESTABLISH_TIMEOUT
) -> list[str]:
    """Server-side applies every CRD document of `crds`, waits until each one is Established,
    and returns their names."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    names: list[str] = []
    for document in crds:
        crd = {key: value for key, value in document.items() if key != "status"}
        crd["metadata"] = {
            key: value
            for key, value in document.get("metadata", {}).items()
            if key != "creationTimestamp"
        }
        name = crd["metadata"]["name"]
        api.patch_cluster_custom_object(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            name,
            crd,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        names.append(name)
    for name in names:

        def established(name: str = name) -> bool:
            crd = api.get_cluster_custom_object(
                "apiextensions.k8s.io", "v1", "customresourcedefinitions", name
            )
            return isinstance(crd, dict) and is_established(crd)

        wait_until(established, timeout=timeout, what=f"CRD {name} to be Established")
    return names
