"""flarectl: the command-line client of FLARE.

It speaks gRPC to the control plane (IntentService, OfferService and
TokenService of flare.v1). The typer application lives in `flarectl.main`.
"""
