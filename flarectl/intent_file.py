"""Reading an intent from a YAML or JSON file (or stdin), in the seeds'
spelling or in protobuf JSON, wrapped as {"intent": {...}} or bare."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from flare.dialect import normalize
from flare.v1 import intent_pb2
from flarectl.errors import InputError

STDIN = "-"


@dataclass(frozen=True)
class IntentFile:
    source: str  # the path, or "<stdin>"
    intent: intent_pb2.Intent

    def request_id(self, intent_id: str = "") -> str:
        """A stable idempotency key: the same intent (however the file is laid
        out, and ignoring output-only fields) with the same --id gives the same
        key, so applying it again creates nothing new."""
        canonical = json.dumps(
            {
                "intent": json_format.MessageToDict(
                    user_spec(self.intent), preserving_proto_field_name=True
                ),
                "intent_id": intent_id,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return "flarectl-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def user_spec(intent: intent_pb2.Intent) -> intent_pb2.Intent:
    """Only the fields a user writes: objective, workload, constraints, sla."""
    spec = intent_pb2.Intent(objective=intent.objective)
    for field in ("workload", "constraints", "sla"):
        if intent.HasField(field):
            getattr(spec, field).CopyFrom(getattr(intent, field))
    return spec


def _read(path: str) -> tuple[str, str]:
    if path == STDIN:
        return "<stdin>", sys.stdin.read()
    try:
        return path, Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(path, "no such file") from error
    except IsADirectoryError as error:
        raise InputError(path, "is a directory, not an intent file") from error
    except UnicodeDecodeError as error:
        raise InputError(path, f"not UTF-8 text ({error.reason})") from error
    except OSError as error:
        raise InputError(path, f"cannot read: {error.strerror}") from error


def _parse(source: str, text: str) -> Any:
    """JSON for .json files and text that starts with "{", YAML otherwise."""
    if not text.strip():
        raise InputError(source, "the file is empty")
    if source.endswith(".json") or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(
                source, f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            ) from error
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InputError(source, f"not valid YAML: {problem}{where}") from error
    if len(documents) != 1:
        raise InputError(
            source, f"holds {len(documents)} YAML documents; an intent file holds exactly one"
        )
    return documents[0]


def _unwrap(source: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError(source, "expected an intent: a mapping with objective and workload")
    if "intent" not in data:
        return data
    extra = sorted(str(key) for key in data if key != "intent")
    if extra:
        raise InputError(source, f"unexpected keys next to 'intent': {', '.join(extra)}")
    body = data["intent"]
    if not isinstance(body, dict):
        raise InputError(source, "'intent' must be a mapping with objective and workload")
    return body


def parse_intent(source: str, text: str) -> IntentFile:
    """An intent from file contents; InputError (with the field paths) if the
    contents cannot be an intent."""
    body = _unwrap(source, _parse(source, text))
    normalized, violations = normalize(body, intent_pb2.Intent.DESCRIPTOR, "intent")
    if violations:
        raise InputError(
            source,
            "invalid intent",
            [f"{v.field}: {v.description}" for v in violations],
        )
    intent = intent_pb2.Intent()
    try:
        json_format.ParseDict(normalized, intent)
    except json_format.ParseError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise InputError(source, "invalid intent", lines) from error
    return IntentFile(source, intent)


def load_intent(path: str) -> IntentFile:
    """The intent in a file, or on stdin for "-"."""
    source, text = _read(path)
    return parse_intent(source, text)
