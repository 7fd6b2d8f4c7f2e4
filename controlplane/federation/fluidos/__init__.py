"""The `fluidos` federation: the consumer cluster's FLUIDOS and Liqo resources
as FLARE's Federation port."""
