"""Agent telemetry: the journal, the live state of every node and its GPUs."""
