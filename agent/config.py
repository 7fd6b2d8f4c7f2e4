"""What the operator tells the agent about the provider behind a node: who sells it, where it
is, what a GPU-hour costs, and how FLUIDOS knows this node. Validated on construction; the
command-line and environment parsing fills it in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from flare.money import CURRENCIES, Money

NETWORK_TIERS = ("premium", "standard", "basic")
_LOWER_HYPHEN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ConfigError(ValueError):
    """The provider configuration is not usable; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    provider_name: str
    region: str
    hourly_rate: Money  # per GPU-hour
    zone: str = ""
    preemptible: bool = False
    # The provider cluster this node belongs to; the provider name when unset.
    cluster: str = ""
    # Availability the provider commits to, in percent; None when it commits to none.
    availability_percent: float | None = None
    network_bandwidth_gbps: int | None = None
    network_latency_ms: int | None = None
    network_tier: str | None = None
    # The FLUIDOS identity of this provider, as its Flavors name it.
    node_id: str = ""
    domain: str = ""
    ip: str = ""
    liqo_id: str = ""
    country: str = ""
    city: str = ""
    flavor_namespace: str = "fluidos"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))

    def problems(self) -> list[str]:
        found: list[str] = []
        name = self.provider_name
        if not name.strip() or len(name) > 63 or not name.isprintable():
            found.append("provider name must be 1 to 63 printable characters")
        if not _LOWER_HYPHEN.match(self.region):
            found.append(f"region {self.region!r} must be lower case words joined by hyphens")
        if self.zone and not _LOWER_HYPHEN.match(self.zone):
            found.append(f"zone {self.zone!r} must be lower case words joined by hyphens")
        rate = self.hourly_rate
        if not isinstance(rate.amount, Decimal) or not rate.amount.is_finite() or rate.amount < 0:
            found.append("hourly rate must be a non-negative decimal amount")
        if rate.currency not in CURRENCIES:
            known = ", ".join(sorted(CURRENCIES))
            found.append(f"currency {rate.currency!r} is not one of {known}")
        if self.cluster and not _LOWER_HYPHEN.match(self.cluster):
            found.append(f"cluster {self.cluster!r} must be lower case words joined by hyphens")
        if self.availability_percent is not None and not 0 < self.availability_percent <= 100:
            found.append("availability must be a percentage above 0 and at most 100")
        if self.country and not re.fullmatch(r"[A-Z]{2}", self.country):
            found.append(f"country {self.country!r} must be an ISO-3166 alpha-2 code such as DE")
        if self.network_bandwidth_gbps is not None and self.network_bandwidth_gbps <= 0:
            found.append("network bandwidth must be a positive number of Gbit/s")
        if self.network_latency_ms is not None and self.network_latency_ms < 0:
            found.append("network latency must be zero or more milliseconds")
        if self.network_tier is not None and self.network_tier not in NETWORK_TIERS:
            found.append(f"network tier {self.network_tier!r} is not one of {NETWORK_TIERS}")
        if not _NAMESPACE.match(self.flavor_namespace):
            found.append(f"flavor namespace {self.flavor_namespace!r} is not a namespace name")
        return found

    @property
    def cluster_name(self) -> str:
        return self.cluster or self.provider_name

    def fluidos_problems(self) -> list[str]:
        """What is missing to publish a FLUIDOS Flavor (the CRD requires the owner's identity)."""
        identity = (("node id", self.node_id), ("domain", self.domain), ("ip", self.ip))
        return [f"{label} is needed for the Flavor owner" for label, value in identity if not value]
