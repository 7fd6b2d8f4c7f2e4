"""The admin kubeconfig of a cluster works for any Kubernetes client and grants cluster admin."""

from __future__ import annotations

import pytest

from tests.harness.cluster import Cluster

pytestmark = pytest.mark.k8s


def test_admin_kubeconfig_authenticates_as_cluster_admin(k8s_cluster: Cluster) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(k8s_cluster.kubeconfig))  # type: ignore[no-untyped-call]
    with api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert review.status is not None and review.status.user_info is not None
        assert "system:masters" in (review.status.user_info.groups or [])
        namespaces = {
            ns.metadata.name
            for ns in client.CoreV1Api(api).list_namespace().items
            if ns.metadata is not None
        }
    assert {"default", "kube-system"} <= namespaces
    assert k8s_cluster.server.startswith("https://127.0.0.1:")
