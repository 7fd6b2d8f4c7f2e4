"""The bootstrap admin token in cluster mode: kept in a Secret of the control
plane's namespace (key `token`), made by the first leader."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from datetime import datetime
from typing import Any

from controlplane import auth
from controlplane.store.base import TokenStore

log = logging.getLogger(__name__)
ADMIN_SECRET = "flare-admin-token"


async def ensure_admin_secret(
    store: TokenStore, api_client: Any, namespace: str, *, now: datetime
) -> bool:
    """Creates the admin token and its Secret unless a Secret holds a token the store
    knows. Returns True when a new token was made."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core: Any = client.CoreV1Api(api_client)
    try:
        found = await asyncio.to_thread(core.read_namespaced_secret, ADMIN_SECRET, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        found = None
    if found is not None:
        secret = base64.b64decode((found.data or {}).get("token", "")).decode().strip()
        name = auth.token_name_of(secret)
        if name and await store.token(name) is not None:
            return False
        log.warning("the Secret %s holds no known token; making a new one", ADMIN_SECRET)
    _, secret = await auth.create_token(
        store,
        tenant=auth.ADMIN_TENANT,
        display_name="bootstrap admin",
        scopes=[auth.ADMIN],
        ttl=None,
        creator="flare-controlplane",
        now=now,
        token_id=f"admin-{secrets.token_hex(3)}",
    )
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=ADMIN_SECRET,
            namespace=namespace,
            labels={"app.kubernetes.io/part-of": "flare"},
        ),
        string_data={"token": secret},
    )
    if found is None:
        await asyncio.to_thread(core.create_namespaced_secret, namespace, body)
    else:
        await asyncio.to_thread(core.replace_namespaced_secret, ADMIN_SECRET, namespace, body)
    log.info("admin token written to Secret %s/%s", namespace, ADMIN_SECRET)
    return True
