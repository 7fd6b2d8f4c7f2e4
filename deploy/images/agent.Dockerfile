# flare-agent: multi-stage, slim, non-root. Build from the repository root:
#   docker build -f deploy/images/agent.Dockerfile -t flare/agent:0.1.0 .
# The wheel stage resolves the pinned dependencies; the runtime stage has no compiler.
FROM python:3.11.11-slim-bookworm AS wheels
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY flare ./flare
COPY agent ./agent
COPY controlplane ./controlplane
COPY flarectl ./flarectl
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt ".[kubernetes]"

FROM python:3.11.11-slim-bookworm
COPY --from=wheels /wheels /wheels
# Offline, from the wheels resolved above under constraints.txt: every version is pinned.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links /wheels "flare[kubernetes]" \
    && rm -rf /wheels
# NVML comes from the host driver, mounted by the NVIDIA container runtime.
USER 65532:65532
ENTRYPOINT ["flare-agent"]
