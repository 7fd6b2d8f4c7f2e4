"""Typed access to one kind of custom resource through `kubernetes.client.CustomObjectsApi`,
whose methods return untyped objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


def _as_dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(value).__name__}")
    return value


class CustomResources:
    """The namespaced custom resources `plural` of `group`/`version`."""

    def __init__(self, api_client: ApiClient, group: str, version: str, plural: str) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.group = group
        self.version = version
        self.plural = plural

    def _where(self, namespace: str) -> tuple[str, str, str, str]:
        return (self.group, self.version, namespace, self.plural)

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(self.api.create_namespaced_custom_object(*self._where(namespace), body))

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return _as_dict(self.api.get_namespaced_custom_object(*self._where(namespace), name))

    def list(self, namespace: str) -> dict[str, Any]:
        return _as_dict(self.api.list_namespaced_custom_object(*self._where(namespace)))

    def merge_patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(
            self.api.patch_namespaced_custom_object(
                *self._where(namespace), name, patch, _content_type=MERGE_PATCH
            )
        )

    def replace(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return _as_dict(
            self.api.replace_namespaced_custom_object(*self._where(namespace), name, body)
        )

    def replace_status(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return _as_dict(
            self.api.replace_namespaced_custom_object_status(*self._where(namespace), name, body)
        )

    def apply(
        self, namespace: str, body: dict[str, Any], manager: str, *, force: bool = False
    ) -> dict[str, Any]:
        """Server-side apply as field manager `manager`; returns the stored object."""
        name = body["metadata"]["name"]
        self.api.patch_namespaced_custom_object(
            *self._where(namespace),
            name,
            body,
            field_manager=manager,
            force=force,
            _content_type=APPLY_PATCH,
        )
        # The client deserializes nothing for the 201 of an apply that creates, so read back.
        return self.get(namespace, name)

    def delete(self, namespace: str, name: str) -> None:
        self.api.delete_namespaced_custom_object(*self._where(namespace), name)

    def watch(
        self, namespace: str, resource_version: str, timeout_seconds: int = 10
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) pairs after `resource_version`, until the timeout."""
        from kubernetes import watch

        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            self.api.list_namespaced_custom_object,
            *self._where(namespace),
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )
        for event in stream:
            yield str(event["type"]), _as_dict(event["object"])
