"""One Kubernetes test cluster on the loopback address: etcd and kube-apiserver, optionally
kube-controller-manager, kube-scheduler and kwok, and the CRDs the tests use."""

from __future__ import annotations

import atexit
import http.client
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from tests.harness import kubeconfig, pki
from tests.harness.crds import install_crds, load_crds
from tests.harness.fluidos_crds import fluidos_crds
from tests.harness.gpu_nodes import KWOK_ANNOTATION
from tests.harness.ports import LOOPBACK, free_ports
from tests.harness.processes import Process, rss_bytes, start_process, stop_processes
from tests.harness.tools import Tools
from tests.harness.waiting import wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

START_TIMEOUT = 90.0
SERVICE_CIDR = "10.96.0.0/16"
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")
# FLARE's own resources (cluster mode), generated from the protos.
FLARE_CRDS = Path(__file__).resolve().parents[2] / "deploy" / "base" / "controlplane" / "crds.yaml"


class ClusterStartError(RuntimeError):
    """A component did not start; the message carries the end of its log."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int

    def all(self) -> tuple[int, ...]:
        return (self.etcd_client, self.etcd_peer, self.apiserver)


@dataclass(frozen=True)
class Options:
    """What runs besides etcd and kube-apiserver."""

    workloads: bool = True
    """kube-controller-manager, kube-scheduler and kwok, so that pods get scheduled and run."""
    crds: bool = True
    """Install the CRDs: Liqo's and Capsule's from the tools directory, FLUIDOS's
    (tests/harness/fluidos_crds.py) and FLARE's own."""


def scratch_root() -> Path:
    """Where clusters keep their files: memory-backed /dev/shm when there is one."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() else Path(tempfile.gettempdir())


class Cluster:
    """A cluster that `start()` brings up and `stop()` tears down, also when starting fails.

    All files (certificates, kubeconfig, etcd data, logs) live in one temporary directory that
    `stop()` removes; each component runs in its own process group."""

    def __init__(self, name: str, tools: Tools, options: Options | None = None) -> None:
        self.name = name
        self.tools = tools
        self.options = options or Options()
        self._processes: list[Process] = []
        self._workdir: Path | None = None
        self._ports: Ports | None = None
        self._lock = threading.Lock()

    # ----- what tests use

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError(f"cluster {self.name} is not started")
        return self._workdir

    @property
    def ports(self) -> Ports:
        if self._ports is None:
            raise RuntimeError(f"cluster {self.name} is not started")
        return self._ports

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.ports.apiserver}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def processes(self) -> tuple[Process, ...]:
        return tuple(self._processes)

    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def rss_bytes(self) -> int:
        """Resident memory of all the cluster's processes together."""
        return sum(rss_bytes(pid) for pid in self.pids())

    def api_client(self) -> ApiClient:
        """A new client authenticated as cluster admin; the caller closes it."""
        from kubernetes import client

        configuration = client.Configuration(
            host=self.server,
            ssl_ca_cert=str(self._path("ca.crt")),
            cert_file=str(self._path("admin.crt")),
            key_file=str(self._path("admin.key")),
        )
        return client.ApiClient(configuration)

    # ----- life cycle

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops every process (SIGTERM, then SIGKILL) and removes the cluster's directory."""
        with self._lock:
            processes, self._processes = self._processes, []
            # Clients first, etcd last: an apiserver that loses etcd while shutting down
            # lingers until it is killed.
            for process in reversed(processes):
                stop_processes([process])
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            _live_clusters.discard(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Cluster({self.name!r}, server={self._server_or_none()!r})"

    def _server_or_none(self) -> str | None:
        return self.server if self._ports else None

    # ----- starting

    def _start(self) -> None:
        with self._lock:
            if self._workdir is not None:
                raise RuntimeError(f"cluster {self.name} is already started")
            _live_clusters.add(self)
            self._workdir = Path(
                tempfile.mkdtemp(prefix=f"flare-k8s-{self.name}-", dir=scratch_root())
            )
            self._ports = Ports(*free_ports(3))
        (self.workdir / "logs").mkdir()
        self._write_credentials()
        self._spawn("etcd", self._etcd_args())
        self._spawn("kube-apiserver", self._apiserver_args())
        self._wait_for_apiserver()
        if self.options.workloads:
            self._spawn("kube-controller-manager", self._controller_manager_args())
            self._spawn("kube-scheduler", self._scheduler_args())
            self._spawn("kwok", self._kwok_args())
        if self.options.crds:
            with self.api_client() as client:
                install_crds(
                    client,
                    [*load_crds([*self.tools.crd_files(), FLARE_CRDS]), *fluidos_crds()],
                )
        if self.options.workloads:
            self._wait_for_default_service_account()

    def _path(self, name: str) -> Path:
        return self.workdir / name

    def _write_credentials(self) -> None:
        ca = pki.new_ca(f"flare-{self.name}-ca")
        serving = pki.issue(
            ca,
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ip_addresses=(LOOPBACK,),
            server=True,
        )
        admin = pki.issue(ca, "flare-admin", organizations=("system:masters",), client=True)
        signing = pki.new_signing_key()
        files = {
            "ca.crt": ca.cert_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "admin.crt": admin.cert_pem,
            "admin.key": admin.key_pem,
            "service-account.pub": signing.public_pem,
            "service-account.key": signing.private_pem,
        }
        for name, data in files.items():
            self._path(name).write_bytes(data)
            self._path(name).chmod(0o600)
        config = kubeconfig.kubeconfig(self.name, self.server, ca.cert_pem, admin)
        kubeconfig.write_kubeconfig(self.kubeconfig, config)

    def _spawn(self, name: str, args: list[str]) -> None:
        argv = [str(self.tools.binary(name)), *args]
        process = start_process(name, argv, self._path(f"logs/{name}.log"))
        with self._lock:
            self._processes.append(process)

    def _etcd_args(self) -> list[str]:
        client = f"http://{LOOPBACK}:{self.ports.etcd_client}"
        peer = f"http://{LOOPBACK}:{self.ports.etcd_peer}"
        return [
            f"--name={self.name}",
            f"--data-dir={self._path('etcd')}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        return [
            f"--etcd-servers=http://{LOOPBACK}:{self.ports.etcd_client}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={self._path('apiserver-certs')}",
            f"--tls-cert-file={self._path('apiserver.crt')}",
            f"--tls-private-key-file={self._path('apiserver.key')}",
            f"--client-ca-file={self._path('ca.crt')}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self._path('service-account.pub')}",
            f"--service-account-signing-key-file={self._path('service-account.key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # The Endpoints of the `kubernetes` Service may not hold a loopback address.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _controller_manager_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--cluster-name={self.name}",
            f"--service-account-private-key-file={self._path('service-account.key')}",
            f"--root-ca-file={self._path('ca.crt')}",
            "--profiling=false",
        ]

    def _scheduler_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            "--profiling=false",
        ]

    def _kwok_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={KWOK_STAGES}",
            "--manage-nodes-with-annotation-selector={}={}".format(*KWOK_ANNOTATION),
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            f"--node-ip={LOOPBACK}",
        ]

    def _check_running(self) -> None:
        for process in self._processes:
            if not process.running():
                raise ClusterStartError(
                    f"{process.name} of cluster {self.name} exited with code "
                    f"{process.popen.returncode}:\n{process.log_tail()}"
                )

    def _wait_for_apiserver(self) -> None:
        context = ssl.create_default_context(cafile=str(self._path("ca.crt")))
        context.load_cert_chain(str(self._path("admin.crt")), str(self._path("admin.key")))

        def ready() -> bool:
            self._check_running()
            connection = http.client.HTTPSConnection(
                LOOPBACK, self.ports.apiserver, context=context, timeout=5
            )
            try:
                connection.request("GET", "/readyz")
                return connection.getresponse().status == 200
            except OSError:
                return False
            finally:
                connection.close()

        try:
            wait_until(ready, timeout=START_TIMEOUT, what=f"{self.name} /readyz", interval=0.2)
        except TimeoutError as error:
            logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self._processes)
            raise ClusterStartError(f"{error}\n{logs}") from None

    def _wait_for_default_service_account(self) -> None:
        from kubernetes import client

        with self.api_client() as api_client:
            core = client.CoreV1Api(api_client)

            def present() -> bool:
                self._check_running()
                accounts = core.list_namespaced_service_account("default").items
                return any(
                    account.metadata is not None and account.metadata.name == "default"
                    for account in accounts
                )

            wait_until(present, timeout=START_TIMEOUT, what=f"{self.name} default service account")


_live_clusters: set[Cluster] = set()


@atexit.register
def _stop_live_clusters() -> None:
    """Last resort for an interpreter exiting with clusters still up."""
    for cluster in list(_live_clusters):
        cluster.stop()
