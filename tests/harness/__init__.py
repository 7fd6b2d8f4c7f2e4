"""Real Kubernetes API servers for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok on the loopback address, built by scripts/k8s-tools.sh."""

from tests.harness.cluster import Cluster, ClusterStartError, Options
from tests.harness.crds import install_crds
from tests.harness.custom_resources import CustomResources
from tests.harness.federation import Federation
from tests.harness.gpu_nodes import AMD_GPU, NVIDIA_GPU, create_gpu_node
from tests.harness.tools import Tools, ToolsMissingError, find_tools

__all__ = [
    "AMD_GPU",
    "NVIDIA_GPU",
    "Cluster",
    "ClusterStartError",
    "CustomResources",
    "Federation",
    "Options",
    "Tools",
    "ToolsMissingError",
    "create_gpu_node",
    "find_tools",
    "install_crds",
]
