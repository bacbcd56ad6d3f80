#!/bin/bash
# Runs once, after the influxdb:2.x image has set up the org, bucket and admin token from
# DOCKER_INFLUXDB_INIT_* (the image runs /docker-entrypoint-initdb.d/*.sh with the influx CLI
# already configured with that token, and exports DOCKER_INFLUXDB_INIT_BUCKET_ID).
#
# magsleep's dashboards and analysis speak InfluxQL through the v1-compatible API, which needs a
# DBRP mapping from a database/retention-policy name to the bucket. We use the bucket's name as the
# database name and "autogen" as the default retention policy.
set -euo pipefail

: "${DOCKER_INFLUXDB_INIT_BUCKET_ID:?set by the influxdb image during setup}"
: "${DOCKER_INFLUXDB_INIT_BUCKET:?}"
: "${DOCKER_INFLUXDB_INIT_ORG:?}"

influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --default
echo "magsleep: DBRP ${DOCKER_INFLUXDB_INIT_BUCKET}/autogen -> bucket ${DOCKER_INFLUXDB_INIT_BUCKET_ID}"
