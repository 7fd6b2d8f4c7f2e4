"""Where the Kubernetes test binaries (kustomize, for the deploy/ tests, among them) and CRD
manifests built by scripts/k8s-tools.sh live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kustomize",
)
BUILD_HINT = "run scripts/k8s-tools.sh to build the Kubernetes test binaries"


class ToolsMissingError(RuntimeError):
    """The binaries or CRD manifests are not where the harness looks for them."""


@dataclass(frozen=True)
class Tools:
    """Paths of the built binaries and of the fetched CRD manifests."""

    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def crd_dir(self) -> Path:
        return self.root / "crds"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def crd_files(self) -> list[Path]:
        return sorted(self.crd_dir.glob("**/*.yaml"))


def tools_root(environ: dict[str, str] | None = None) -> Path:
    """The tools directory: $FLARE_K8S_DIR when set, else .build/k8s in the repository."""
    env = os.environ if environ is None else environ
    override = env.get("FLARE_K8S_DIR")
    return Path(override) if override else REPO_ROOT / ".build" / "k8s"


def missing_tools(tools: Tools) -> list[str]:
    """Names of the binaries that are absent or not executable, plus 'crds' if none exist."""
    missing = [
        name
        for name in BINARIES
        if not (tools.binary(name).is_file() and os.access(tools.binary(name), os.X_OK))
    ]
    if not tools.crd_files():
        missing.append("crds")
    return missing


def find_tools(environ: dict[str, str] | None = None) -> Tools:
    """Returns the tools, or raises ToolsMissingError naming what is missing."""
    tools = Tools(tools_root(environ))
    missing = missing_tools(tools)
    if missing:
        raise ToolsMissingError(f"missing {', '.join(missing)} in {tools.root}: {BUILD_HINT}")
    return tools
