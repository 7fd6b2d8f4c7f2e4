"""Server-side apply by two field managers: field ownership, conflicts and forced takeover."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from tests.k8s.conftest import unique
from tests.k8s.test_custom_resources import GROUP, VERSION, flavor, flavors

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.k8s

PUBLISHER = "flavor-publisher"
RESERVER = "flavor-reserver"


def field_paths(fields: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the leaves of a managedFields `fieldsV1` tree."""
    paths: set[str] = set()
    for key, child in fields.items():
        if not key.startswith("f:"):
            continue
        path = f"{prefix}{key[2:]}"
        paths |= field_paths(child, f"{path}.") if child else {path}
    return paths


def owned(obj: Mapping[str, Any], manager: str) -> set[str]:
    """Fields of `obj` that `manager` owns through apply operations."""
    return {
        path
        for entry in obj["metadata"].get("managedFields", [])
        if entry["manager"] == manager and entry["operation"] == "Apply"
        for path in field_paths(entry.get("fieldsV1", {}))
    }


def partial(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flavor",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_field_managers_own_what_they_apply(api: ApiClient, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    name = unique("flavor")
    resources = flavors(api)

    def apply(manager: str, body: dict[str, Any], force: bool = False) -> dict[str, Any]:
        return resources.apply(namespace, body, manager, force=force)

    created = apply(PUBLISHER, flavor(name, 8))
    assert {"spec.availability", "spec.providerID", "spec.price.amount"} <= owned(
        created, PUBLISHER
    )

    # Another manager changing a field the first one owns is a conflict naming the owner.
    with pytest.raises(ApiException) as conflict:
        apply(RESERVER, partial(name, {"availability": False}))
    assert conflict.value.status == 409
    assert PUBLISHER in str(conflict.value.body)
    assert "spec.availability" in str(conflict.value.body)

    # Applying the owner's value again, or a field nobody owns, is no conflict: the first
    # field becomes shared, the second belongs to the new manager alone.
    shared = apply(
        RESERVER, partial(name, {"providerID": "provider-1", "location": {"country": "IT"}})
    )
    assert "spec.providerID" in owned(shared, PUBLISHER) & owned(shared, RESERVER)
    assert "spec.location.country" in owned(shared, RESERVER) - owned(shared, PUBLISHER)

    # Forcing takes the field over: the value changes and the first manager loses it.
    forced = apply(
        RESERVER,
        partial(
            name, {"providerID": "provider-1", "location": {"country": "IT"}, "availability": False}
        ),
        force=True,
    )
    assert forced["spec"]["availability"] is False
    assert "spec.availability" in owned(forced, RESERVER)
    assert "spec.availability" not in owned(forced, PUBLISHER)

    # The first manager re-applying without the field leaves the new owner's value alone.
    without = flavor(name, 16)
    del without["spec"]["availability"]
    reapplied = apply(PUBLISHER, without)
    assert reapplied["spec"]["availability"] is False
    assert reapplied["spec"]["flavorType"]["typeData"] == {"gpu": {"count": 16}}

    # A manager leaving out a field it alone owns removes the field.
    dropped = apply(RESERVER, partial(name, {"providerID": "provider-1", "availability": False}))
    assert "location" not in dropped["spec"]
    assert dropped["spec"]["availability"] is False
