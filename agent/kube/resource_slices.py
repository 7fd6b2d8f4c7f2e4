"""Reads the ResourceSlices the node's DRA drivers publish for it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flare import dra

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
_NOT_READABLE = (403, 404)  # no RBAC for it, or a cluster without resource.k8s.io/v1


class SliceReader:
    """The devices of this node's ResourceSlices; None where the cluster does not let
    the agent read them (said once in the log)."""

    def __init__(self, api_client: ApiClient, node_name: str) -> None:
        from kubernetes import client

        self._custom: Any = client.CustomObjectsApi(api_client)
        self.node_name = node_name
        self._told = False

    def read(self) -> list[dra.Device] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            listed = self._custom.list_cluster_custom_object(
                dra.GROUP,
                dra.VERSION,
                "resourceslices",
                field_selector=f"spec.nodeName={self.node_name}",
            )
        except ApiException as error:
            if error.status not in _NOT_READABLE:
                raise
            if not self._told:
                log.warning(
                    "ResourceSlices are not readable (%s %s): no DRA cross-check",
                    error.status,
                    error.reason,
                )
                self._told = True
            return None
        return dra.devices(listed.get("items") or [], node=self.node_name)
