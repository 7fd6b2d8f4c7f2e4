"""Durable state behind interfaces: `base` defines them, `sqlite` is the
embedded implementation. Cluster mode adds a Kubernetes-backed one."""
