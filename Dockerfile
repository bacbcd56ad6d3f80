# The magsleep collector. BLE works through the host's BlueZ: run with host networking and the
# host's system D-Bus socket mounted (see docker-compose.yml); no bluetoothd in the image.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY collector ./collector
RUN python -m venv /opt/magsleep \
 && /opt/magsleep/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/magsleep/bin/pip install --no-cache-dir .

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="magsleep collector" \
      org.opencontainers.image.source="https://github.com/magsleep/magsleep"
COPY --from=build /opt/magsleep /opt/magsleep
ENV PATH=/opt/magsleep/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MAGSLEEP_STORAGE__STATE_DIR=/state
RUN useradd --uid 1000 --home-dir /state --no-create-home magsleep \
 && mkdir -p /state /config && chown magsleep:magsleep /state
USER magsleep
VOLUME ["/state"]
HEALTHCHECK --interval=60s --timeout=10s CMD ["magsleep", "version"]
ENTRYPOINT []
CMD ["magsleep", "run"]
