"""flarectl watch: changes printed as they happen, in revision order."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.support import EXAMPLES, WAIT, Cli, explain, running_controlplane
from tests.controlplane_process import free_port

TRAINING = EXAMPLES / "training-4xa100.json"


def test_watch_prints_each_change_as_it_happens(cli: Cli) -> None:
    """A watch of the whole tenant, started before the intent exists, sees it
    go from pending to running and, after a cancel, to cancelled."""
    environ = {k: v for k, v in cli.environ().items() if v is not None}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "flarectl", "watch", "--until", "cancelled", "--timeout", WAIT],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let the watch start before the intent exists
        name = cli.apply(TRAINING)["name"]
        cli.wait_for(name, "running")
        cli.ok("cancel", name)
        stdout, stderr = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, stderr
    header, *lines = stdout.splitlines()
    assert header.split() == ["REVISION", "NAME", "STATE", "REASON", "MESSAGE"]
    rows = [line.split(maxsplit=4) for line in lines]
    assert {row[1] for row in rows} == {name.rsplit("/", 1)[1]}
    states = [row[2] for row in rows]
    assert states == [
        "pending",
        "planning",
        "reserving",
        "deploying",
        "running",
        "cancelling",
        "cancelled",
    ]
    revisions = [int(row[0]) for row in rows]
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == len(revisions)
    assert rows[2][3] == "Placed"


def test_watch_from_revision_replays_what_came_after(cli: Cli) -> None:
    name = cli.apply(TRAINING)["name"]
    cli.wait_for(name, "running")
    history = cli.get(name)["history"]
    placed = next(int(change["revision"]) for change in history if change["reason"] == "Placed")

    result = cli.ok(
        "watch", name, "--from-revision", str(placed), "--until", "running", "-o", "json"
    )
    events: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["intent"]["state"] for e in events] == ["STATE_DEPLOYING", "STATE_RUNNING"]
    assert all(int(e["revision"]) > placed for e in events)


def test_watch_of_one_intent_starts_with_its_current_state_and_ends_with_it(cli: Cli) -> None:
    name = cli.apply(TRAINING)["name"]
    cli.wait_for(name, "running")
    cli.ok("cancel", name)
    cli.wait_for(name, "cancelled")
    # Nothing changes after a final state: the watch ends by itself.
    result = cli.ok("watch", name, "--timeout", WAIT)
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[2] for row in rows] == ["cancelled"]


def test_watch_until_fails_when_the_intent_ends_elsewhere_or_time_runs_out(cli: Cli) -> None:
    name = cli.apply(TRAINING)["name"]
    cli.wait_for(name, "running")
    timed_out = cli.run("watch", name, "--until", "succeeded", "--timeout", "1s")
    assert timed_out.exit_code == 1, explain(timed_out)
    assert timed_out.stderr.strip() == "error: timed out before reaching succeeded"

    cli.ok("cancel", name)
    ended = cli.run("watch", name, "--until", "succeeded", "--timeout", WAIT)
    assert ended.exit_code == 1, explain(ended)
    assert ended.stderr.strip() == "error: the intent ended before reaching succeeded"


def test_watch_rejects_a_bad_timeout(cli: Cli) -> None:
    result = cli.run("watch", "--timeout", "soon")
    assert result.exit_code == 2
    assert "'soon' is not a duration" in result.stderr


@pytest.mark.slow
def test_watch_resumes_after_the_server_restarts(tmp_path: Path) -> None:
    """The watch outlives a restart of the control plane and picks up where it
    left off: the changes made after the restart arrive, none twice."""
    data_dir = tmp_path / "restarting"
    port = free_port()
    env = {"HOME": str(tmp_path), "FLARE_ADDRESS": f"127.0.0.1:{port}"}
    with running_controlplane(data_dir, port) as plane:
        cli = Cli(plane.address, plane.admin_token, tmp_path)
        name = cli.apply(TRAINING)["name"]
        cli.wait_for(name, "running")
        env["FLARE_TOKEN"] = plane.admin_token
        watcher = subprocess.Popen(
            [sys.executable, "-m", "flarectl", "watch", name, "--until", "cancelled"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
    try:
        with running_controlplane(data_dir, port):
            cli.ok("cancel", name)
            stdout, stderr = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, stderr
    rows = [line.split() for line in stdout.splitlines()[1:]]
    assert [row[2] for row in rows] == ["running", "cancelling", "cancelled"]
    warnings = stderr.splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: lost the connection (UNAVAILABLE: ")
    assert warnings[0].endswith(f"retrying, to resume after revision {rows[0][0]}")


@contextlib.contextmanager
def _ctrl_c_as_at_a_terminal() -> Iterator[None]:
    """A test run started in the background ignores SIGINT, and a child started then
    inherits that (and Python installs no KeyboardInterrupt in it). A handler is not
    inherited, so a child started while this test handles SIGINT gets a terminal's."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_ends_a_watch_quietly(cli: Cli) -> None:
    name = cli.apply(TRAINING)["name"]
    cli.wait_for(name, "running")
    environ = {k: v for k, v in cli.environ().items() if v is not None}
    with _ctrl_c_as_at_a_terminal():
        watcher = subprocess.Popen(
            [sys.executable, "-m", "flarectl", "watch"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split()[0] == "REVISION"
        first = watcher.stdout.readline().split()
        watcher.send_signal(signal.SIGINT)
        rest, stderr = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, stderr
    assert first[1:3] == [name.rsplit("/", 1)[1], "running"]
    assert rest == ""
    assert stderr == ""
