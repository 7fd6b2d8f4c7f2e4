"""Intents: the model (the flare.v1.Intent message), validation and lifecycle."""
