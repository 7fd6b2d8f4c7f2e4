"""The FLUIDOS CRDs the harness writes (tests/harness/fluidos_crds.py) against the published ones.

The comparison needs the published manifests of fluidos-project/node at the pinned commit
(deployments/node/crds/*.yaml); point FLARE_PUBLISHED_FLUIDOS_CRDS at a directory holding them.
Without it that test is skipped, saying so; the structural checks below always run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.env_dirs import directory_named_by
from tests.harness.crds import load_crds
from tests.harness.fluidos_crds import VERSION, fluidos_crds, struct

PUBLISHED_ENV = "FLARE_PUBLISHED_FLUIDOS_CRDS"

# What the published manifests carry that the project's CRDs leave out on purpose: prose and
# kubectl columns, which change nothing the API server accepts or stores.
COSMETIC = {"description", "additionalPrinterColumns"}


def _structure(value: Any) -> Any:
    """`value` with the cosmetic keys dropped and `required` lists made order-free."""
    if isinstance(value, dict):
        return {
            key: sorted(item) if key == "required" else _structure(item)
            for key, item in value.items()
            if key not in COSMETIC
        }
    if isinstance(value, list):
        return [_structure(item) for item in value]
    return value


def _differences(ours: Any, theirs: Any, path: str = "") -> Iterator[str]:
    """Every place where two documents differ, named by its path."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(ours.keys() | theirs.keys()):
            where = f"{path}.{key}" if path else key
            if key not in theirs:
                yield f"{where}: only in ours"
            elif key not in ours:
                yield f"{where}: only in the published manifest"
            else:
                yield from _differences(ours[key], theirs[key], where)
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            yield from _differences(a, b, f"{path}[{index}]")
    elif ours != theirs:
        yield f"{path}: ours {ours!r}, published {theirs!r}"


def test_the_crds_match_the_published_manifests_field_by_field() -> None:
    directory = directory_named_by(PUBLISHED_ENV, "no published FLUIDOS manifests to compare with")
    published = {
        crd["metadata"]["name"]: crd
        for crd in load_crds(sorted(directory.glob("*.fluidos.eu_*.yaml")))
    }
    ours = {crd["metadata"]["name"]: crd for crd in fluidos_crds()}
    assert sorted(ours) == sorted(published)
    for name, crd in ours.items():
        theirs = published[name]
        differences = list(_differences(_structure(crd["spec"]), _structure(theirs["spec"])))
        assert not differences, f"{name}:\n  " + "\n  ".join(differences)


def test_there_are_eleven_namespaced_kinds_served_at_v1alpha1_with_a_status_subresource() -> None:
    crds = fluidos_crds()
    assert len({crd["metadata"]["name"] for crd in crds}) == 11
    for crd in crds:
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
        assert spec["group"].endswith(".fluidos.eu")
        assert spec["scope"] == "Namespaced"
        [version] = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
        assert version["subresources"] == {"status": {}}
        assert set(version["schema"]["openAPIV3Schema"]["properties"]) == {
            "apiVersion",
            "kind",
            "metadata",
            "spec",
            "status",
        }


def test_each_call_returns_documents_of_its_own() -> None:
    first = fluidos_crds()
    first[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"].clear()
    assert fluidos_crds()[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]


def test_a_struct_lists_its_required_fields_and_refuses_a_field_that_is_both() -> None:
    schema = struct(required={"b": {"type": "string"}, "a": {"type": "string"}})
    assert schema["required"] == ["a", "b"]
    assert "required" not in struct(optional={"a": {"type": "string"}})
    with pytest.raises(ValueError, match="both required and optional"):
        struct(required={"a": {"type": "string"}}, optional={"a": {"type": "string"}})


def test_the_comparison_names_the_path_of_a_difference() -> None:
    ours = {"properties": {"spec": {"type": "object", "required": ["b", "a"]}}}
    theirs = {"properties": {"spec": {"type": "string", "required": ["a", "b"]}, "x": {}}}
    assert list(_differences(_structure(ours), _structure(theirs))) == [
        "properties.spec.type: ours 'object', published 'string'",
        "properties.x: only in the published manifest",
    ]
