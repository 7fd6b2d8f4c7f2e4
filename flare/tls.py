"""TLS for FLARE's endpoints: credentials for gRPC servers and channels, an SSL
context for the REST gateway, and the names a verified client certificate gives.

Files are PEM. A server with a client CA requires every client on that port to
present a certificate signed by it (mutual TLS): the control plane's agent port.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import grpc

# What gRPC's auth context says a verified client certificate names.
_NAME_KEYS = ("x509_common_name", "x509_subject_alternative_name")


class TlsError(ValueError):
    """A TLS file is missing or unreadable; the message names it."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TlsError(f"cannot read the {what} {path}: {error.strerror}") from error


def server_credentials(
    cert: Path, key: Path, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """Server TLS with `cert` and `key`; with `client_ca`, clients must present a
    certificate that it signed."""
    pair = (_read(key, "TLS key"), _read(cert, "TLS certificate"))
    roots = _read(client_ca, "client CA") if client_ca is not None else None
    return grpc.ssl_server_credentials([pair], roots, require_client_auth=roots is not None)


def channel_credentials(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    """TLS to a server whose certificate `ca` signed (None: the system's roots),
    presenting `cert` and `key` when given (mutual TLS)."""
    if (cert is None) != (key is None):
        raise TlsError("a client certificate needs its key, and a key its certificate")
    return grpc.ssl_channel_credentials(
        _read(ca, "CA") if ca is not None else None,
        _read(key, "TLS key") if key is not None else None,
        _read(cert, "TLS certificate") if cert is not None else None,
    )


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2 or later for an HTTPS server."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise TlsError(f"cannot use the TLS certificate {cert} and key {key}: {error}") from error
    return context


def client_names(context: Any) -> frozenset[str]:
    """The names (common name, subject alternative names) of the client certificate
    the call's TLS handshake verified; empty without one."""
    auth = context.auth_context()
    return frozenset(
        value.decode(errors="replace") for key in _NAME_KEYS for value in auth.get(key, ())
    )
