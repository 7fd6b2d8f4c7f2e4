"""The GPU Xid errors FLARE watches and which of them make a GPU unusable: one
list for the agent's probes and the control plane's metrics."""

from __future__ import annotations

from collections.abc import Mapping

# Xids that mean the GPU needs attention, counted with explicit zeros
# (NVIDIA's Xid catalogue: 48 double-bit ECC, 63/64 row remapping, 74 NVLink,
# 79 fallen off the bus, 92 high single-bit ECC rate, 94/95 contained and
# uncontained ECC, 119/120 GSP errors).
WATCHED_XIDS = (48, 63, 64, 74, 79, 92, 94, 95, 119, 120)
FATAL_XIDS = frozenset({48, 74, 79, 95, 119, 120})
_XID_MEANING = {
    48: "double-bit ECC error",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    95: "uncontained ECC error",
    119: "GSP timeout",
    120: "GSP error",
}


def xid_problems(xids: Mapping[int, int]) -> list[str]:
    """A problem line for each fatal Xid that occurred."""
    return [
        f"Xid {xid} ({_XID_MEANING.get(xid, 'fatal')}) seen {xids[xid]} times"
        for xid in sorted(FATAL_XIDS)
        if xids.get(xid)
    ]
