"""The FLARE node agent (a DaemonSet on every provider node)."""
