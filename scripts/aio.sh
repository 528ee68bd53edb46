#!/bin/bash
# The all-in-one main job on a fresh machine: engine, images, a deployed and verified cloud.
# Site files go to ${MORTAR_CONFIG_DIR:-/etc/mortar}; re-running converges (a no-op when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
M=.venv/bin/mortar
CONF=${MORTAR_CONFIG_DIR:-/etc/mortar}
$M build --profile core --summary-json build-out/summary.json
$M guest-image
$M init --config-dir "$CONF"
$M genpwd --config-dir "$CONF"
$M prechecks --config-dir "$CONF"
$M deploy --config-dir "$CONF"
$M post-deploy --config-dir "$CONF"
$M init-runonce --config-dir "$CONF"
$M verify --config-dir "$CONF"
horizon_port=$(.venv/bin/python -c "import yaml,sys; print((yaml.safe_load(open('$CONF/globals.yml')) or {}).get('horizon_port', 80))")
cat <<EOT

The cloud is up and verified.
  CLI credentials: $CONF/clouds.yaml (cloud "mortar") and $CONF/admin-openrc.sh
      export OS_CLOUD=mortar OS_CLIENT_CONFIG_FILE=$CONF/clouds.yaml
  Horizon: http://127.0.0.1:${horizon_port}/ user "admin", password: keystone_admin_password in $CONF/passwords.yml
EOT
