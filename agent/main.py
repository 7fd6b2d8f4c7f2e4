"""`flare-agent`: placeholder until the node-agent work lands.

The agent will probe GPUs (NVML, amdsmi or simulated), annotate its Node,
publish its FLUIDOS Flavor and stream telemetry to the control plane. This
release has none of that yet; the command says so and exits non-zero so that
nothing mistakes it for a working agent.
"""

from __future__ import annotations

import sys

MESSAGE = (
    "flare-agent: not implemented in this release. The node agent (GPU probes, Node "
    "annotations, FLUIDOS Flavor, telemetry stream) is planned; the control plane's "
    "embedded default serves a simulated federation meanwhile."
)


def main(argv: list[str] | None = None) -> int:
    print(MESSAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
