"""The FLARE control plane: intent API, placement, federation and telemetry."""
