# One image for every driftline service: `docker run driftline collector`, `... sidecar`, `... alerts run`,
# `... dashboard`. Build: docker build -t driftline:0.1.0 .
# Nothing secret is baked in: passwords, tokens and keys arrive at run time (env or /run/secrets).
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY sdk ./sdk
COPY collector ./collector
COPY detectors ./detectors
COPY alerting ./alerting
COPY dashboard ./dashboard
COPY cli ./cli
# A virtualenv copied whole into the runtime stage: no compilers or build caches in the final image.
# The server's tested versions: requirements.lock constrains every package '.[server]' pulls in.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c requirements.lock --upgrade pip \
 && /opt/venv/bin/pip install -c requirements.lock ".[server]"

# The example model for docker-compose's sidecar demo, trained at build time (small, deterministic).
COPY deploy/example_model.py /opt/driftline/example_model.py
RUN /opt/venv/bin/python /opt/driftline/example_model.py build /opt/driftline/model.joblib


FROM python:3.11-slim

LABEL org.opencontainers.image.title="driftline" \
      org.opencontainers.image.description="Monitoring for ML models in production: collector, sidecar, detectors, alerting, dashboard" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # Nothing may download at run time, and Streamlit must not phone home.
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    HF_HUB_OFFLINE=1 \
    # Servers in a container listen on every interface; the compose network is the boundary.
    DRIFTLINE_METRICS_HOST=0.0.0.0 \
    DRIFTLINE_DATA_DIR=/var/lib/driftline

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/driftline /opt/driftline
COPY deploy/healthcheck.py /usr/local/bin/driftline-healthcheck

# Named volumes mounted under /var/lib/driftline start with this ownership (a path missing from the
# image would be root's, and the non-root services could not write it).
RUN groupadd --system --gid 10001 driftline \
 && useradd --system --uid 10001 --gid driftline --home-dir /var/lib/driftline --shell /usr/sbin/nologin driftline \
 && mkdir -p /var/lib/driftline/alerting /etc/driftline \
 && chown -R driftline:driftline /var/lib/driftline \
 && chmod 0755 /usr/local/bin/driftline-healthcheck

USER driftline
WORKDIR /var/lib/driftline
VOLUME ["/var/lib/driftline"]

# Default: the collector's /metrics (port 9464). Other services override the URL in compose.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["driftline-healthcheck", "http://127.0.0.1:9464/metrics"]

ENTRYPOINT ["driftline"]
CMD ["--help"]
