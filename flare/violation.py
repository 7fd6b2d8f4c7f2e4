"""A problem with one field of a request, as google.rpc.BadRequest reports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    # Dotted path of proto field names with list indexes:
    # "intent.workload.ports[0].port".
    field: str
    # What is wrong and what is accepted.
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"
