"""Where offers are and what a location constraint means.

"EU" means the 27 member states of the European Union (not "Europe": Norway,
Switzerland and the UK are in Europe but not in the EU). A location
constraint is one of: a group ("EU", "EEA"), a continent ("Europe", "Asia",
"North America", or its short form "NA"), "US", an ISO-3166 alpha-2 country
code ("DE"), or a provider region ("eu-west-1"; a prefix such as "eu-west"
matches its regions).
"""

from __future__ import annotations

import re

EU_MEMBER_STATES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "HU",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    ]
)
EEA = EU_MEMBER_STATES | {"IS", "LI", "NO"}

CONTINENT_OF_COUNTRY: dict[str, str] = {
    **dict.fromkeys(EU_MEMBER_STATES, "Europe"),
    **dict.fromkeys(
        ["GB", "NO", "CH", "IS", "LI", "UA", "RS", "AL", "BA", "ME", "MK", "MD", "TR"], "Europe"
    ),
    **dict.fromkeys(["US", "CA", "MX"], "North America"),
    **dict.fromkeys(["BR", "AR", "CL", "CO", "PE", "UY"], "South America"),
    **dict.fromkeys(
        [
            "JP",
            "KR",
            "CN",
            "TW",
            "HK",
            "SG",
            "IN",
            "ID",
            "MY",
            "TH",
            "VN",
            "PH",
            "IL",
            "AE",
            "SA",
            "QA",
        ],
        "Asia",
    ),
    **dict.fromkeys(["AU", "NZ"], "Oceania"),
    **dict.fromkeys(["ZA", "NG", "KE", "EG", "MA"], "Africa"),
}
CONTINENTS = frozenset(CONTINENT_OF_COUNTRY.values())
_CONTINENT_ALIASES = {
    "na": "North America",
    "north-america": "North America",
    "sa": "South America",
    "south-america": "South America",
    "apac": "Asia",
}
_GROUPS = {"eu": EU_MEMBER_STATES, "eea": EEA, "us": frozenset({"US"})}
_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def canonical_continent(text: str) -> str | None:
    lowered = text.strip().lower()
    for continent in CONTINENTS:
        if continent.lower() == lowered:
            return continent
    return _CONTINENT_ALIASES.get(lowered.replace(" ", "-"))


def location_error(location: str) -> str | None:
    """Why a location constraint is not understood, or None when it is."""
    text = location.strip()
    if not text or text.lower() in _GROUPS or text.lower() == "any":
        return None
    if canonical_continent(text) or text.upper() in CONTINENT_OF_COUNTRY:
        return None
    if _REGION.match(text):
        return None
    return (
        f"{location!r} is not EU, EEA, US, a continent ({', '.join(sorted(CONTINENTS))}), "
        "an ISO-3166 country code or a lower-case region such as eu-west-1"
    )


def matches(location: str, *, country: str, continent: str, region: str) -> bool:
    """Whether an offer in (country, continent, region) satisfies `location`."""
    text = location.strip()
    lowered = text.lower()
    if not text or lowered == "any":
        return True
    group = _GROUPS.get(lowered)
    if group is not None:
        return country in group
    named = canonical_continent(text)
    if named:
        return continent == named
    if text.upper() in CONTINENT_OF_COUNTRY and len(text) == 2:
        return country == text.upper()
    return region == lowered or region.startswith(lowered + "-")
