"""Child processes of a test cluster, each in its own process group, logging to a file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        return tail(self.log_path, lines)


def start_process(name: str, argv: Sequence[str], log_path: Path) -> Process:
    """Starts `argv` in a new session (and so a new process group) with output to `log_path`."""
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log_path)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_processes(processes: Sequence[Process], timeout: float = STOP_TIMEOUT) -> None:
    """Sends SIGTERM to every process group, waits up to `timeout` seconds in all, then sends
    SIGKILL to the groups still alive and reaps every process."""
    for process in processes:
        _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.running() or group_alive(process.pid):
            _signal_group(process.pid, signal.SIGKILL)
        process.popen.wait()
    for process in processes:
        while group_alive(process.pid) and time.monotonic() < deadline + timeout:
            time.sleep(0.05)


def tail(path: Path, lines: int = 25) -> str:
    """The last `lines` lines of a text file, or '' if it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process, from /proc; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
