# smartmetrics daemon image: `docker run -v $PWD/config.yaml:/etc/smartmetrics/config.yaml -p 9877:9877 smartmetrics`
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY smartmetrics ./smartmetrics
# The package from this checkout, with the Dask client so the image also serves as a Dask worker
# (deploy/kubernetes/dask.yaml); DL3013 asks to pin versions, which a local path has no use for.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[dask]' \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/smartmetrics --create-home smartmetrics \
 && mkdir -p /etc/smartmetrics
COPY configs/example.yaml /etc/smartmetrics/config.yaml

# The store (store.path, default models/) is relative to the working directory: keep it on a volume
# so a restarted container serves its baselines at once.
WORKDIR /var/lib/smartmetrics
VOLUME ["/var/lib/smartmetrics"]
USER 10001:10001

EXPOSE 9877
# Probes /-/healthy as the config serves it: over HTTPS and with basic auth when those are on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["smartmetrics", "health", "--config", "/etc/smartmetrics/config.yaml"]

ENTRYPOINT ["smartmetrics"]
CMD ["run", "--config", "/etc/smartmetrics/config.yaml"]
