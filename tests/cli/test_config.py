"""Where flarectl finds the address and the token: flag > environment >
config file > embedded default."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarectl.config import DEFAULT_ADDRESS, Connection, is_local, resolve
from flarectl.errors import ExitCode, InputError
from tests.cli.support import Cli, ControlPlane, explain


def write_config(home: Path, text: str) -> Path:
    path = home / ".config" / "flare" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_admin_token(data_dir: Path, token: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "admin-token").write_text(token + "\n")


def test_nothing_configured_is_the_embedded_default(tmp_path: Path) -> None:
    found = resolve(None, None, environ={}, home=tmp_path)
    assert found == Connection(DEFAULT_ADDRESS, None, "default", "")


def test_the_default_data_dirs_admin_token_is_used_for_a_local_server(tmp_path: Path) -> None:
    write_admin_token(tmp_path / ".local" / "share" / "flare", "flr.default.admin.x")
    found = resolve(None, None, environ={}, home=tmp_path)
    assert found.token == "flr.default.admin.x"
    assert found.token_source == str(tmp_path / ".local/share/flare/admin-token")

    elsewhere = tmp_path / "data"
    write_admin_token(elsewhere, "flr.default.admin.y")
    found = resolve(None, None, environ={"FLARE_DATA_DIR": str(elsewhere)}, home=tmp_path)
    assert found.token == "flr.default.admin.y"


def test_the_admin_token_never_goes_to_another_machine(tmp_path: Path) -> None:
    write_admin_token(tmp_path / ".local" / "share" / "flare", "flr.default.admin.x")
    found = resolve("flare.example.com:443", None, environ={}, home=tmp_path)
    assert found.token is None


def test_precedence_flag_over_environment_over_config_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "address: config-host:1\ntoken: from-config\n")
    write_admin_token(tmp_path / ".local" / "share" / "flare", "from-admin-file")

    assert resolve(None, None, environ={}, home=tmp_path) == Connection(
        "config-host:1", "from-config", str(config), str(config)
    )
    environ = {"FLARE_ADDRESS": "env-host:2", "FLARE_TOKEN": "from-env"}
    assert resolve(None, None, environ=environ, home=tmp_path) == Connection(
        "env-host:2", "from-env", "FLARE_ADDRESS", "FLARE_TOKEN"
    )
    assert resolve("flag-host:3", "from-flag", environ=environ, home=tmp_path) == Connection(
        "flag-host:3", "from-flag", "--address", "--token"
    )
    # Each setting on its own: a flag for one, the environment for the other.
    mixed = resolve("flag-host:3", None, environ=environ, home=tmp_path)
    assert (mixed.address, mixed.token) == ("flag-host:3", "from-env")


def test_flare_config_names_the_file_and_token_file_is_relative_to_it(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "secret").write_text("from-token-file\n")
    config = folder / "flare.yaml"
    config.write_text("address: there:9\ntoken_file: secret\n")
    found = resolve(None, None, environ={"FLARE_CONFIG": str(config)}, home=tmp_path)
    assert found == Connection("there:9", "from-token-file", str(config), str(folder / "secret"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("adress: x:1\n", "unknown key adress; known keys: address, token, token_file"),
        ("- address\n", "the config file must be a mapping of address, token"),
        ("token: a\ntoken_file: b\n", "set token or token_file, not both"),
        ("address: [1, 2]\n", "address must be a string"),
        ("token_file: missing\n", "cannot read the token file: No such file or directory"),
    ],
)
def test_a_bad_config_file_is_a_usage_error(tmp_path: Path, text: str, problem: str) -> None:
    config = write_config(tmp_path, text)
    with pytest.raises(InputError) as raised:
        resolve(None, None, environ={}, home=tmp_path)
    assert raised.value.exit_code == ExitCode.USAGE
    source = str(config) if "token file" not in problem else str(config.parent / "missing")
    assert raised.value.headline == f"{source}: {problem}"


def test_a_missing_flare_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="config file not found"):
        resolve(None, None, environ={"FLARE_CONFIG": str(tmp_path / "nope.yaml")}, home=tmp_path)


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("unix:/run/flare.sock", True),
        ("dns:///localhost:50051", True),
        ("10.0.0.5:50051", False),
        ("flare.example.com:443", False),
    ],
)
def test_which_addresses_are_this_machine(address: str, local: bool) -> None:
    assert is_local(address) is local


def test_flarectl_reads_address_and_token_file_from_the_config_file(
    controlplane: ControlPlane, cli: Cli, home: Path
) -> None:
    write_config(
        home,
        f"address: {controlplane.address}\ntoken_file: {controlplane.data_dir / 'admin-token'}\n",
    )
    unset = {"FLARE_ADDRESS": None, "FLARE_TOKEN": None}
    result = cli.run("token", "list", "-o", "json", env=unset)
    assert result.exit_code == 0, explain(result)
    assert "tenants/default/tokens/admin-" in result.stdout


def test_flarectl_uses_the_local_admin_token_of_the_data_dir(
    controlplane: ControlPlane, cli: Cli
) -> None:
    env = {"FLARE_TOKEN": None, "FLARE_DATA_DIR": str(controlplane.data_dir)}
    result = cli.run("token", "list", "-o", "json", env=env)
    assert result.exit_code == 0, explain(result)
    assert "tenants/default/tokens/admin-" in result.stdout


def test_flarectl_reports_a_bad_config_file_with_exit_code_2(cli: Cli, home: Path) -> None:
    config = write_config(home, "address: [\n")
    result = cli.run("list")
    assert result.exit_code == 2, explain(result)
    assert result.stderr.startswith(f"error: {config}: not valid YAML")
