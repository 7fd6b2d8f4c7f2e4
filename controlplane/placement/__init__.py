"""Placement: offers, hard constraints, objectives and the plan. Pure: no gRPC,
Kubernetes or NVML imports; plain immutable data in, plain data out."""
