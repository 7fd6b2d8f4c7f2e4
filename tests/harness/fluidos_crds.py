"""The FLUIDOS Node CustomResourceDefinitions the test clusters install, written in this project.

FLARE targets the v1alpha1 API of fluidos-project/node at commit 9018b69 (v0.1.2 plus two
commits). Its Go module is not served by every module proxy, so the tests cannot fetch the
published manifests the way they fetch Liqo's and Capsule's; instead this module declares the
API's Go types once, as OpenAPI v3 schemas, and builds the eleven CRDs from them:

  advertisement.fluidos.eu  Discovery, PeeringCandidate
  network.fluidos.eu        Broker, KnownCluster
  nodecore.fluidos.eu       Allocation, Flavor, ServiceBlueprint, Solver
  reservation.fluidos.eu    Contract, Reservation, Transaction

Every kind is namespaced, served and stored at v1alpha1, with a status subresource. The
schemas carry what the API server enforces: structure, types, formats, required fields and the
free-form parts (x-kubernetes-preserve-unknown-fields). Descriptions and kubectl printer
columns are left out: they change nothing the server accepts or stores.

tests/unit/test_fluidos_crds.py compares these, field by field, with the published manifests
when a copy of them is at hand (FLARE_PUBLISHED_FLUIDOS_CRDS).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

Schema = dict[str, Any]

VERSION = "v1alpha1"
UPSTREAM = "fluidos-project/node@9018b69069ae045a4e6456b7a9b58665f62ff28d"


# -- schema vocabulary ---------------------------------------------------------------------


def string() -> Schema:
    return {"type": "string"}


def boolean() -> Schema:
    return {"type": "boolean"}


def int64() -> Schema:
    return {"type": "integer", "format": "int64"}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def string_map() -> Schema:
    """A Go map[string]string."""
    return {"type": "object", "additionalProperties": string()}


def raw() -> Schema:
    """A runtime.RawExtension: any JSON object, kept as sent."""
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def struct(
    required: Mapping[str, Schema] | None = None, optional: Mapping[str, Schema] | None = None
) -> Schema:
    """A Go struct: `required` fields have no omitempty, `optional` ones do."""
    required = dict(required or {})
    optional = dict(optional or {})
    clash = required.keys() & optional.keys()
    if clash:
        raise ValueError(f"fields both required and optional: {sorted(clash)}")
    schema: Schema = {"type": "object", "properties": {**required, **optional}}
    if required:
        schema["required"] = sorted(required)
    return schema


# -- types shared by several kinds ---------------------------------------------------------

NODE_IDENTITY = struct(
    required={"domain": string(), "ip": string(), "nodeID": string()},
    optional={"additionalInformation": struct(optional={"liqoID": string()})},
)

PHASE_STATUS = struct(
    required={"phase": string()},
    optional={
        "endTime": string(),
        "lastChangeTime": string(),
        "message": string(),
        "startTime": string(),
    },
)

# A reference to another object (apiVersion, kind, name, namespace), every part optional.
OBJECT_REF = struct(
    optional={"apiVersion": string(), "kind": string(), "name": string(), "namespace": string()}
)

# The part of metav1.ObjectMeta that the schema of an embedded object keeps.
EMBEDDED_OBJECT_META = struct(
    optional={
        "annotations": string_map(),
        "finalizers": array(string()),
        "labels": string_map(),
        "name": string(),
        "namespace": string(),
    }
)

LIST_META = struct(
    optional={
        "continue": string(),
        "remainingItemCount": int64(),
        "resourceVersion": string(),
        "selfLink": string(),
    }
)

SELECTOR = struct(required={"flavorType": string()}, optional={"filters": raw()})

CONFIGURATION = struct(required={"data": raw(), "type": string()})

TELEMETRY_ENDPOINT = struct(required={"endpoint": string()}, optional={"intents": array(string())})

EXPIRY_STATUS = struct(required={"expirationTime": string(), "lastUpdateTime": string()})

FLAVOR_SPEC = struct(
    required={
        "availability": boolean(),
        "flavorType": struct(required={"typeData": raw(), "typeIdentifier": string()}),
        "owner": NODE_IDENTITY,
        "price": struct(required={"amount": string(), "currency": string(), "period": string()}),
        "providerID": string(),
    },
    optional={
        "location": struct(
            optional={
                "additionalNotes": string(),
                "city": string(),
                "country": string(),
                "latitude": string(),
                "longitude": string(),
            }
        ),
        "networkPropertyType": string(),
    },
)

FLAVOR_STATUS = struct(
    required={"creationTime": string(), "expirationTime": string(), "lastUpdateTime": string()}
)


def embedded(spec: Schema, status: Schema) -> Schema:
    """A whole object inside another one's spec or status (a Flavor in a Contract)."""
    return struct(
        optional={
            "apiVersion": string(),
            "kind": string(),
            "metadata": EMBEDDED_OBJECT_META,
            "spec": spec,
            "status": status,
        }
    )


FLAVOR = embedded(FLAVOR_SPEC, FLAVOR_STATUS)


PEERING_CANDIDATE_SPEC = struct(
    required={
        "available": boolean(),
        "flavor": FLAVOR,
        "interestedSolverIDs": array(string()),
    }
)

PEERING_CANDIDATE_STATUS = struct(required={"creationTime": string(), "lastUpdateTime": string()})


# -- the kinds -----------------------------------------------------------------------------


class Kind(NamedTuple):
    group: str
    kind: str
    plural: str
    short_names: list[str]
    spec: Schema
    status: Schema


def _kinds() -> list[Kind]:
    """Every FLUIDOS kind."""
    return [
        Kind(
            "advertisement.fluidos.eu",
            "Discovery",
            "discoveries",
            ["dis"],
            struct(
                required={"solverID": string(), "subscribe": boolean()},
                optional={"selector": SELECTOR},
            ),
            struct(
                required={"phase": PHASE_STATUS},
                optional={
                    "peeringCandidateList": struct(
                        required={
                            "items": array(
                                embedded(PEERING_CANDIDATE_SPEC, PEERING_CANDIDATE_STATUS)
                            )
                        },
                        optional={"apiVersion": string(), "kind": string(), "metadata": LIST_META},
                    )
                },
            ),
        ),
        Kind(
            "advertisement.fluidos.eu",
            "PeeringCandidate",
            "peeringcandidates",
            [],
            PEERING_CANDIDATE_SPEC,
            PEERING_CANDIDATE_STATUS,
        ),
        Kind(
            "network.fluidos.eu",
            "Broker",
            "brokers",
            ["broker", "brokers"],
            struct(
                required={
                    name: string()
                    for name in ("address", "cacert", "clcert", "metric", "name", "role", "rule")
                }
            ),
            EXPIRY_STATUS,
        ),
        Kind(
            "network.fluidos.eu",
            "KnownCluster",
            "knownclusters",
            ["kclust", "kclusts"],
            struct(required={"address": string()}),
            EXPIRY_STATUS,
        ),
        Kind(
            "nodecore.fluidos.eu",
            "Allocation",
            "allocations",
            ["alloc", "allocs"],
            struct(optional={"contract": OBJECT_REF, "forwarding": boolean()}),
            struct(
                optional={
                    "lastUpdateTime": string(),
                    "message": string(),
                    "resourceRef": OBJECT_REF,
                    "status": string(),
                }
            ),
        ),
        Kind("nodecore.fluidos.eu", "Flavor", "flavors", ["fl"], FLAVOR_SPEC, FLAVOR_STATUS),
        Kind(
            "nodecore.fluidos.eu",
            "ServiceBlueprint",
            "serviceblueprints",
            ["sbp"],
            struct(
                required={
                    "category": string(),
                    "description": string(),
                    "hostingPolicies": array(string()),
                    "name": string(),
                    "tags": array(string()),
                    "templates": array(
                        struct(
                            required={"name": string(), "serviceData": raw()},
                            optional={"description": string()},
                        )
                    ),
                }
            ),
            struct(
                optional={
                    "serviceFlavors": array(
                        struct(
                            required={
                                "category": string(),
                                "configurationTemplate": raw(),
                                "description": string(),
                                "hostingPolicies": array(string()),
                                "name": string(),
                                "tags": array(string()),
                            }
                        )
                    )
                }
            ),
        ),
        Kind(
            "nodecore.fluidos.eu",
            "Solver",
            "solvers",
            ["sol"],
            struct(
                required={"intentID": string()},
                optional={
                    "establishPeering": boolean(),
                    "findCandidate": boolean(),
                    "reserveAndBuy": boolean(),
                    "selector": SELECTOR,
                },
            ),
            struct(
                optional={
                    "consumePhase": string(),
                    "discoveryPhase": string(),
                    "findCandidate": string(),
                    "peering": string(),
                    "reservationPhase": string(),
                    "reserveAndBuy": string(),
                    "solverPhase": PHASE_STATUS,
                }
            ),
        ),
        Kind(
            "reservation.fluidos.eu",
            "Contract",
            "contracts",
            ["contr"],
            struct(
                required={
                    "buyer": NODE_IDENTITY,
                    "buyerClusterID": string(),
                    "flavor": FLAVOR,
                    "peeringTargetCredentials": struct(
                        required={"kubeconfig": string(), "liqoID": string()}
                    ),
                    "seller": NODE_IDENTITY,
                    "transactionID": string(),
                },
                optional={
                    "configuration": CONFIGURATION,
                    "expirationTime": string(),
                    "extraInformation": string_map(),
                    "ingressTelemetryEndpoint": TELEMETRY_ENDPOINT,
                    "networkRequests": string(),
                },
            ),
            struct(required={"phase": PHASE_STATUS}),
        ),
        Kind(
            "reservation.fluidos.eu",
            "Reservation",
            "reservations",
            ["res"],
            struct(
                required={"buyer": NODE_IDENTITY, "seller": NODE_IDENTITY, "solverID": string()},
                optional={
                    "configuration": CONFIGURATION,
                    "ingressTelemetryEndpoint": TELEMETRY_ENDPOINT,
                    "peeringCandidate": OBJECT_REF,
                    "purchase": boolean(),
                    "reserve": boolean(),
                },
            ),
            struct(
                required={"phase": PHASE_STATUS},
                optional={
                    "contract": OBJECT_REF,
                    "purchasePhase": string(),
                    "reservePhase": string(),
                    "transactionID": string(),
                },
            ),
        ),
        Kind(
            "reservation.fluidos.eu",
            "Transaction",
            "transactions",
            ["tr"],
            struct(
                required={"buyer": NODE_IDENTITY, "clusterID": string(), "flavorID": string()},
                optional={"configuration": CONFIGURATION, "expirationTime": string()},
            ),
            struct(required={"phase": PHASE_STATUS}),
        ),
    ]


def _crd(kind: Kind) -> dict[str, Any]:
    names: dict[str, Any] = {
        "kind": kind.kind,
        "listKind": f"{kind.kind}List",
        "plural": kind.plural,
        "singular": kind.kind.lower(),
    }
    if kind.short_names:
        names["shortNames"] = kind.short_names
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": string(),
            "kind": string(),
            "metadata": {"type": "object"},
            "spec": kind.spec,
            "status": kind.status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{kind.group}"},
        "spec": {
            "group": kind.group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def fluidos_crds() -> list[dict[str, Any]]:
    """The eleven FLUIDOS CRDs, as fresh documents (callers may change them)."""
    return [copy.deepcopy(_crd(kind)) for kind in _kinds()]
