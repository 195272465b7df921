# driftwarden's container image: `docker build -t driftwarden .` (docs/deployment.md).
# Mount the config at /etc/driftwarden/config.yaml and the policies under /etc/driftwarden/policies/; the state
# folder /var/lib/driftwarden is a volume (one per replica). Settings also come from DRIFTWARDEN_* variables.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/driftwarden
COPY pyproject.toml README.md LICENSE ./
COPY daemon ./daemon
COPY detectors ./detectors
COPY policies ./policies
COPY deploy ./deploy
COPY examples ./examples
RUN /opt/driftwarden/bin/pip install --no-compile . \
    && /opt/driftwarden/bin/python -m compileall -q /opt/driftwarden/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="driftwarden" \
      org.opencontainers.image.description="Monitoring and retraining daemon for production ML models" \
      org.opencontainers.image.source="https://github.com/driftwarden/driftwarden" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 driftwarden \
    && useradd --system --uid 10001 --gid driftwarden --home-dir /var/lib/driftwarden --no-create-home \
       --shell /usr/sbin/nologin driftwarden \
    && install -d -o driftwarden -g driftwarden -m 0700 /var/lib/driftwarden \
    && install -d -m 0755 /etc/driftwarden /etc/driftwarden/policies
COPY --from=build /opt/driftwarden /opt/driftwarden
ENV PATH=/opt/driftwarden/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DRIFTWARDEN_STATE_DIR=/var/lib/driftwarden \
    DRIFTWARDEN_HTTP__LISTEN=0.0.0.0:8080
VOLUME ["/var/lib/driftwarden"]
WORKDIR /var/lib/driftwarden
USER 10001:10001
EXPOSE 8080
# /livez answers 200 while the loop is alive; slim images have no curl, the image's Python asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=4).status != 200)"]
ENTRYPOINT ["driftwarden"]
CMD ["run", "--config", "/etc/driftwarden/config.yaml", "--json"]
