"""Resource names in the AIP style: "tenants/{tenant}/intents/{intent}",
"tenants/{tenant}/tokens/{token}". Parsing and formatting in one place."""

from __future__ import annotations

import re

from controlplane.errors import InvalidArgument
from flare.violation import FieldViolation

_ID = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_TENANT = re.compile(rf"^tenants/(?P<tenant>{_ID})$")
_CHILD = re.compile(rf"^tenants/(?P<tenant>{_ID})/(?P<collection>intents|tokens)/(?P<id>{_ID})$")
TENANT_ID = re.compile(rf"^{_ID}$")


def tenant_name(tenant: str) -> str:
    return f"tenants/{tenant}"


def intent_name(tenant: str, intent_id: str) -> str:
    return f"tenants/{tenant}/intents/{intent_id}"


def token_name(tenant: str, token_id: str) -> str:
    return f"tenants/{tenant}/tokens/{token_id}"


def parse_parent(parent: str, *, default_tenant: str, field: str = "parent") -> str:
    """The tenant a parent names; the caller's tenant when parent is empty."""
    if not parent:
        return default_tenant
    match = _TENANT.match(parent)
    if not match:
        raise InvalidArgument([FieldViolation(field, f"{parent!r} is not tenants/{{tenant}}")])
    return match.group("tenant")


def parse_child(
    name: str, collection: str, *, default_tenant: str, field: str = "name"
) -> tuple[str, str]:
    """(tenant, id) of "tenants/{tenant}/{collection}/{id}", or of a bare id,
    which is resolved against the caller's tenant (the seeds' REST paths)."""
    match = _CHILD.match(name)
    if match and match.group("collection") == collection:
        return match.group("tenant"), match.group("id")
    if TENANT_ID.match(name):
        return default_tenant, name
    raise InvalidArgument(
        [FieldViolation(field, f"{name!r} is not tenants/{{tenant}}/{collection}/{{id}} or an id")]
    )


def tenant_of(name: str) -> str:
    return name.split("/", 2)[1]
