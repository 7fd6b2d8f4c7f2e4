"""Bad HTTP requests for the REST gateway: the seeds' requests with their JSON
mutated, random bytes, deep nesting, oversized bodies, mangled paths and query
strings, wrong methods and content types. Used by tests/api/test_fuzz.py and
the fuzzing campaign (benchmarks/fuzz.py)."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from typing import Any

from tests.intents import SEED_INFERENCE, SEED_TRAINING

MAX_BODY = 4 * 1024 * 1024
SEEDS: list[tuple[str, str, Any]] = [
    ("POST", "/api/v1/intents", SEED_INFERENCE),
    ("POST", "/api/v1/intents", SEED_TRAINING),
    ("POST", "/api/v1/intents:plan", SEED_INFERENCE),
    ("GET", "/api/v1/intents?states=STATE_RUNNING&page_size=10", None),
    ("GET", "/api/v1/intents/x", None),
    ("GET", "/api/v1/tenants/default/intents/x", None),
    ("DELETE", "/api/v1/intents/x", None),
    ("POST", "/api/v1/tenants/default/intents/x:cancel", {}),
    ("GET", "/api/v1/offers?page_size=5", None),
    ("GET", "/api/v1/resources", None),
    ("POST", "/api/v1/auth/tokens", {"token": {"scopes": ["intents:read"]}}),
    ("GET", "/api/v1/auth/tokens", None),
]
KINDS = ("mutated json", "random bytes", "deep nesting", "oversized", "mangled path", "bad method")


@dataclass(frozen=True)
class HttpRequest:
    kind: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _odd_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            -1,
            2**70,
            1e308,
            "",
            "x" * rng.randrange(1, 5000),
            "\ud800" if rng.random() < 0.1 else "Ω≈ç√",
            [],
            {},
            [1, "two", None],
            {"unknown_field": 1},
        ]
    )


def mutate_json(value: Any, rng: random.Random) -> Any:
    """`value` with one to four of its nodes replaced, deleted or given odd company."""
    value = copy.deepcopy(value)
    for _ in range(rng.randint(1, 4)):
        value = _mutate_once(value, rng)
    return value


def _mutate_once(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(sorted(value))
        action = rng.randrange(3)
        if action == 0:
            del value[key]
        elif action == 1:
            value[key] = _mutate_once(value[key], rng)
        else:
            value[key + rng.choice(["", "_x", "Extra"])] = _odd_value(rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        index = rng.randrange(len(value))
        value[index] = _mutate_once(value[index], rng)
        return value
    return _odd_value(rng)


def _mangle(path: str, rng: random.Random) -> str:
    choice = rng.randrange(7)
    if choice == 0:
        return path + "/" + "a" * rng.randrange(1, 3000)
    if choice == 1:
        return path.replace("/", "//")
    if choice == 2:
        return path + "%00%ff%2F..%2F"
    if choice == 3:
        return path + "?" + "&".join(f"k{i}=%zz" for i in range(rng.randrange(1, 50)))
    if choice == 4:
        return path.split("?", maxsplit=1)[0] + "?page_size=-5&states=NOPE&page_token=%%%"
    if choice == 5:
        return path + ":watch?revision=-1"
    return "/api/v1/" + "/".join(rng.choice(["tenants", "*", "..", "x"]) for _ in range(6))


def request(rng: random.Random) -> HttpRequest:
    kind = rng.choice(KINDS)
    method, path, seed = rng.choice(SEEDS)
    json_headers = {"Content-Type": "application/json"}
    if kind == "mutated json":
        body = json.dumps(mutate_json(seed if seed is not None else {}, rng), allow_nan=True)
        return HttpRequest(kind, method, path, body.encode("utf-8", "surrogatepass"), json_headers)
    if kind == "random bytes":
        headers = rng.choice([json_headers, {"Content-Type": "text/plain"}, {}])
        return HttpRequest(kind, method, path, rng.randbytes(rng.randrange(0, 400)), headers)
    if kind == "deep nesting":
        depth = rng.randrange(100, 100_000)
        body = (
            ("[" * depth + "]" * depth)
            if rng.random() < 0.5
            else '{"a":' * depth + "1" + "}" * depth
        )
        return HttpRequest(kind, method, path, body.encode(), json_headers)
    if kind == "oversized":
        return HttpRequest(
            kind, "POST", path.split("?")[0], b'{"x":"' + b"y" * MAX_BODY + b'"}', json_headers
        )
    if kind == "mangled path":
        return HttpRequest(kind, method, _mangle(path, rng))
    verb = rng.choice(["PUT", "PATCH", "OPTIONS", "HEAD", "TRACE", "DELETE", "POST"])
    return HttpRequest(kind, verb, path)
