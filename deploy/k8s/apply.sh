#!/usr/bin/env bash
# Deploy (or update) LiftStream on the Kubernetes cluster of the current kubectl context.
#
#   bash deploy/k8s/apply.sh
#
# 1. the namespace; 2. the Secrets, only if missing (random passwords, never in git);
# 3. ConfigMaps from the repository's generated files (schema, Grafana provisioning, dashboards,
#    alert rules: one source of truth shared with deploy/compose.yaml); 4. every manifest here.
# Idempotent: run it again after `python -m dashboards.build` or a schema change.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
NS=liftstream
K="kubectl -n $NS"

kubectl apply -f deploy/k8s/00-namespace.yaml

if ! $K get secret liftstream-clickhouse >/dev/null 2>&1; then
  pw="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  $K create secret generic liftstream-clickhouse \
    --from-literal=password="$pw" \
    --from-literal=store-url="clickhouse://liftstream:${pw}@clickhouse:9000/liftstream"
fi
if ! $K get secret grafana-admin >/dev/null 2>&1; then
  $K create secret generic grafana-admin --from-literal=password="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi

configmap() {  # name, then --from-file arguments; applied so that reruns update it
  local name="$1"; shift
  $K create configmap "$name" "$@" --dry-run=client -o yaml | kubectl apply -f -
}
configmap clickhouse-schema --from-file=01-schema.sql=deploy/clickhouse/01-schema.sql
configmap grafana-datasources --from-file=deploy/grafana/provisioning/datasources/clickhouse.yaml
configmap grafana-providers --from-file=deploy/grafana/provisioning/dashboards/liftstream.yaml
configmap grafana-dashboards --from-file=dashboards/json/liftstream-campaign.json
configmap grafana-alerting --from-file=dashboards/json/liftstream-alert-rules.json

kubectl apply -f deploy/k8s/
echo "deployed; watch with: kubectl -n $NS get pods -w"
