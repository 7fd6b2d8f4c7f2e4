"""Self-contained kubeconfig files (certificates embedded) for a test cluster."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from tests.harness.pki import Credential


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig(name: str, server: str, ca_pem: bytes, user: Credential) -> dict[str, Any]:
    """A kubeconfig with one cluster, one client-certificate user and one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": f"{name}-admin",
                "user": {
                    "client-certificate-data": _b64(user.cert_pem),
                    "client-key-data": _b64(user.key_pem),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
