"""The images' Dockerfiles, checked without a container engine (none runs here):
multi-stage, slim and pinned bases, a non-root numeric user in the final stage,
exec-form entrypoints of programs the package installs, and sources that exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "deploy" / "images").glob("*.Dockerfile"))
PINNED_SLIM = re.compile(r"^FROM [\w./-]+:\d+\.\d+\.\d+-slim-\w+( AS \w+)?$")


def instructions(path: Path) -> list[str]:
    text = path.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_there_are_images_for_both_programs() -> None:
    assert {p.name for p in DOCKERFILES} == {"agent.Dockerfile", "controlplane.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_a_dockerfile_is_multi_stage_slim_pinned_and_non_root(path: Path) -> None:
    lines = instructions(path)
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2, "build and runtime stages"
    for stage in stages:
        assert PINNED_SLIM.match(stage), f"{stage!r}: pin a slim base to its full version"
    final = lines[lines.index(stages[-1]) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users, "the final stage sets a user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric, non-root user"
    [entrypoint] = [line for line in final if line.startswith("ENTRYPOINT ")]
    program = entrypoint.split('"')[1]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert program in scripts, f"{program} is not a program the package installs"
    for line in lines:
        assert not line.startswith("ADD "), "COPY, not ADD"
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{source} does not exist"
