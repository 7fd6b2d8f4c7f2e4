"""FLARE's shared kernel, imported by the control plane, the agent and flarectl.

- `flare.v1`: the wire contract, generated from proto/ (never edited by hand).
- `flare.quantity`, `flare.money`: Kubernetes quantities and ISO-4217 amounts.
- `flare.gpus`: the GPU vocabulary and specification table.
- `flare.dialect`: the seeds' JSON spellings mapped onto the contract.
"""
