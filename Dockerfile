# syntax=docker/dockerfile:1
# The cohort-streamer image the Helm chart runs (helm/cohort-streamer, image.repository).
#   docker build -t cohort-streamer:0.1.0 .
#   docker run --rm -p 9464:9464 -e MOENGAGE_WORKSPACE_ID=... -e MOENGAGE_API_KEY=... \
#     -v "$PWD/streamer.yaml:/etc/cohort-streamer/streamer.yaml:ro" cohort-streamer:0.1.0
# Runs as uid/gid 10001 and works with a read-only root filesystem (only /tmp is written).

ARG PYTHON_IMAGE=python:3.11-slim

ARG RUST_IMAGE=rust:1-slim-bookworm
# The package's version (pyproject.toml) for the image labels; the build fails if they differ,
# so a release bump cannot forget it.
ARG VERSION=0.1.0

FROM ${RUST_IMAGE} AS rust

# --- build: install the package and its dependencies into a virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Rust and a C linker build streamer/fastpath (the per-event path); only this stage has them.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo \
    RUSTUP_HOME=/usr/local/rustup \
    PATH=/usr/local/cargo/bin:$PATH
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata and the extension first, so the dependency layer is reused while only the Python
# code changes.
COPY pyproject.toml README.md ./
COPY streamer/fastpath ./streamer/fastpath
RUN touch streamer/__init__.py \
    && pip install . \
    && pip uninstall -y cohort-streamer
COPY streamer ./streamer
# A regular (non-editable) install: the runtime stage needs only /opt/venv. pip and setuptools
# (23 MB) are build tools: the runtime installs nothing, and builds nothing against the C headers
# some wheels carry (multidict's).
ARG VERSION
RUN pip install --no-deps . \
    && pip uninstall -y -q pip setuptools \
    && find /opt/venv -name '*.h' -delete \
    && python -m compileall -q /opt/venv/lib \
    && installed="$(cohort-streamer --version)" \
    && if [ "$installed" != "cohort-streamer ${VERSION}" ]; then \
         echo "ARG VERSION=${VERSION} differs from the package: ${installed}" >&2; exit 1; fi

# --- runtime: the virtualenv, a non-root user, nothing else ---------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION
LABEL org.opencontainers.image.title="cohort-streamer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="Kafka cohort enter/exit events to MoEngage Cohort Sync" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 streamer \
    && useradd --system --uid 10001 --gid streamer --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin streamer
COPY --from=build /opt/venv /opt/venv
# A default config for `docker run`; the chart mounts its ConfigMap over this directory.
COPY config/streamer.yaml /etc/cohort-streamer/streamer.yaml
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
EXPOSE 9464
# For plain Docker; Kubernetes uses the chart's probes on /healthz and /readyz instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
ENTRYPOINT ["cohort-streamer"]
CMD ["run", "--config", "/etc/cohort-streamer/streamer.yaml"]
