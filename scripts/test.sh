#!/bin/bash
# The test suite: lint, types, unit tests, then integration tests on the real engine.
# Arguments go to pytest. MORTAR_SKIP_INTEGRATION=1 runs everything but the integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check mortar tests bench
.venv/bin/mypy mortar
if [ "${MORTAR_SKIP_INTEGRATION:-}" = 1 ]; then
  exec .venv/bin/python -m pytest tests "$@"
fi
.venv/bin/python -m pytest tests/unit "$@"

# Integration: every image built once, then two sessions side by side: this machine's engine
# (build, all-in-one, faults) and the test bed, whose nodes run engines of their own. Each
# session tags the images in a namespace of its own, so neither removes what the other runs;
# the one test that restarts the engine waits until the test bed session is done.
IMAGES='^(mariadb-server|memcached|rabbitmq|ovn-northd|ovn-nb-db|ovn-sb-db|keystone|glance-api|placement-api|nova-api|nova-conductor|nova-scheduler|nova-compute|nova-libvirt|openvswitch|ovn-controller|neutron-server|neutron-ovn-metadata-agent|horizon|prometheus-server|prometheus-node-exporter|prometheus-mysqld-exporter|registry)$'
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
.venv/bin/mortar build --namespace mortar-test --tag it --logs-dir "$logs/build" "$IMAGES"
export MORTAR_TEST_ENGINE_LOCK="$logs/engine.lock"
MORTAR_TEST_NAMESPACE=mortar-test-bed MORTAR_TEST_SHARES_ENGINE=1 .venv/bin/python -m pytest tests/integration/test_testbed.py \
  tests/integration/test_multihost.py --durations=15 "$@" > "$logs/bed.log" 2>&1 &
bed=$!
aio=0
MORTAR_TEST_NAMESPACE=mortar-test-aio .venv/bin/python -m pytest tests/integration \
  --ignore tests/integration/test_testbed.py --ignore tests/integration/test_multihost.py --durations=25 "$@" || aio=$?
status=0
wait "$bed" || status=$?
echo "==== test bed session (tests/integration/test_testbed.py, test_multihost.py) ===="
cat "$logs/bed.log"
.venv/bin/python -m tests.integration.cleanup mortar-test
[ "$aio" = 0 ] && [ "$status" = 0 ]
