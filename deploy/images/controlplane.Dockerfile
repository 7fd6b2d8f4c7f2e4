# flare-controlplane: multi-stage, slim, non-root. Build from the repository root:
#   docker build -f deploy/images/controlplane.Dockerfile -t flare/controlplane:0.1.0 .
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
USER 65532:65532
ENV FLARE_DATA_DIR=/var/lib/flare
EXPOSE 50051 8080 9401
ENTRYPOINT ["flare-controlplane", "--listen", "0.0.0.0:50051", "--http-listen", "0.0.0.0:8080", "--metrics-listen", "0.0.0.0:9401"]
