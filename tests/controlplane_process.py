"""`flare-controlplane` as its own process on a loopback port, for the tests
and benchmarks that need a real server: start and wait until gRPC health says
SERVING, stop with SIGTERM, or kill -9."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StartError(RuntimeError):
    """The server exited or did not serve in time; the message ends with its log."""


@dataclass
class ControlPlaneProcess:
    data_dir: Path
    port: int = field(default_factory=free_port)
    # Extra flags, e.g. ("--sync", "NORMAL", "--federation-file", path).
    flags: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    # The REST gateway's base URL, for a test that turned it on with --http-listen.
    rest_url: str = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "controlplane.log"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "controlplane.main",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.address,
            "--http-listen",
            "off",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            *self.flags,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._wait_serving()

    def _wait_serving(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise StartError(
                        f"flare-controlplane exited with {self.process.returncode}:\n{self.tail()}"
                    )
                with contextlib.suppress(grpc.RpcError):
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                time.sleep(0.05)
        self.kill()
        raise StartError(
            f"flare-controlplane did not serve within {START_TIMEOUT:.0f}s:\n{self.tail()}"
        )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def running(data_dir: Path, *flags: str, port: int | None = None) -> Iterator[ControlPlaneProcess]:
    server = ControlPlaneProcess(data_dir, port or free_port(), flags)
    server.start()
    try:
        yield server
    finally:
        server.stop()
