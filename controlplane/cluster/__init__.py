"""Cluster mode: state in the consumer cluster's API (CRDs), leader election,
Kubernetes identities."""
