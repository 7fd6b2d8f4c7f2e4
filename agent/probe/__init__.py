"""GPU probes: one interface (`base.Probe`), three backends (nvml, amdsmi, sim)."""
