"""Where the control plane is and which token to send.

Each of the two settings is taken from the first place that has it:

1. the --address / --token flags,
2. the FLARE_ADDRESS / FLARE_TOKEN environment variables,
3. the config file: $FLARE_CONFIG, or ~/.config/flare/config.yaml, with the keys
   `address` and `token` or `token_file`,
4. the embedded default: address 127.0.0.1:50051 and, when the address is on
   this machine, the admin token that flare-controlplane writes into its data
   directory ($FLARE_DATA_DIR or ~/.local/share/flare, file admin-token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flarectl.errors import InputError

DEFAULT_ADDRESS = "127.0.0.1:50051"
ADDRESS_ENV = "FLARE_ADDRESS"
# The CA of a control plane that serves TLS; unset: plaintext.
TLS_CA_ENV = "FLARE_TLS_CA"
TOKEN_ENV = "FLARE_TOKEN"
CONFIG_ENV = "FLARE_CONFIG"
DATA_DIR_ENV = "FLARE_DATA_DIR"
ADMIN_TOKEN_FILE = "admin-token"
CONFIG_KEYS = ("address", "token", "token_file")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"})


@dataclass(frozen=True)
class Connection:
    address: str
    token: str | None
    # Where each value came from, for error messages: "--address", "FLARE_TOKEN",
    # "/home/me/.config/flare/config.yaml", "default".
    address_source: str
    token_source: str
    tls_ca: Path | None = None


@dataclass(frozen=True)
class _ConfigFile:
    path: Path
    address: str | None = None
    token: str | None = None
    token_source: str = ""


def default_config_path(home: Path) -> Path:
    return home / ".config" / "flare" / "config.yaml"


def default_data_dir(environ: Mapping[str, str], home: Path) -> Path:
    configured = environ.get(DATA_DIR_ENV)
    return Path(configured).expanduser() if configured else home / ".local" / "share" / "flare"


def is_local(address: str) -> bool:
    """Whether a gRPC target names this machine (loopback or a Unix socket)."""
    if address.startswith("unix:"):
        return True
    target = address.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host = target.rsplit(":", 1)[0] if ":" in target and not target.endswith("]") else target
    return host.lower() in _LOCAL_HOSTS or host.startswith("127.")


def _read_token_file(path: Path, what: str) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise InputError(str(path), f"cannot read the {what}: {error.strerror}") from error
    if not token:
        raise InputError(str(path), f"the {what} is empty")
    return token


def _load_config(path: Path, *, required: bool) -> _ConfigFile | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        if required:
            raise InputError(str(path), f"config file not found (named by {CONFIG_ENV})") from error
        return None
    except OSError as error:
        raise InputError(str(path), f"cannot read the config file: {error.strerror}") from error
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(str(path), f"not valid YAML: {error}") from error
    if data is None:
        return _ConfigFile(path)
    if not isinstance(data, dict):
        raise InputError(str(path), "the config file must be a mapping of address, token")
    unknown = sorted(str(key) for key in data if key not in CONFIG_KEYS)
    if unknown:
        raise InputError(
            str(path), f"unknown key {', '.join(unknown)}; known keys: {', '.join(CONFIG_KEYS)}"
        )
    for key in CONFIG_KEYS:
        if key in data and not isinstance(data[key], str):
            raise InputError(str(path), f"{key} must be a string")
    if data.get("token") and data.get("token_file"):
        raise InputError(str(path), "set token or token_file, not both")
    token, token_source = data.get("token") or None, str(path)
    if data.get("token_file"):
        token_path = Path(data["token_file"]).expanduser()
        if not token_path.is_absolute():
            token_path = path.parent / token_path
        token, token_source = _read_token_file(token_path, "token file"), str(token_path)
    return _ConfigFile(path, data.get("address") or None, token, token_source)


def resolve(
    address: str | None,
    token: str | None,
    *,
    environ: Mapping[str, str],
    home: Path,
) -> Connection:
    """The address and token to use, from flags, environment, config file and default."""
    config_env = environ.get(CONFIG_ENV)
    if config_env:
        config = _load_config(Path(config_env).expanduser(), required=True)
    else:
        config = _load_config(default_config_path(home), required=False)

    if address:
        chosen_address, address_source = address, "--address"
    elif environ.get(ADDRESS_ENV):
        chosen_address, address_source = environ[ADDRESS_ENV], ADDRESS_ENV
    elif config is not None and config.address:
        chosen_address, address_source = config.address, str(config.path)
    else:
        chosen_address, address_source = DEFAULT_ADDRESS, "default"

    chosen_token: str | None
    if token:
        chosen_token, token_source = token, "--token"
    elif environ.get(TOKEN_ENV):
        chosen_token, token_source = environ[TOKEN_ENV], TOKEN_ENV
    elif config is not None and config.token:
        chosen_token, token_source = config.token, config.token_source
    else:
        chosen_token, token_source = None, ""
        admin_token = default_data_dir(environ, home) / ADMIN_TOKEN_FILE
        # The admin token of the embedded default is only ever sent to this machine.
        if is_local(chosen_address) and admin_token.is_file():
            chosen_token = _read_token_file(admin_token, "admin token file")
            token_source = str(admin_token)
    tls_ca = Path(environ[TLS_CA_ENV]).expanduser() if environ.get(TLS_CA_ENV) else None
    return Connection(chosen_address, chosen_token, address_source, token_source, tls_ca)
