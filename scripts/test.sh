#!/bin/bash
# The test suite: lint, types, unit tests, then integration tests on the real engine.
# Arguments go to pytest. MORTAR_SKIP_INTEGRATION=1 runs everything but the integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
if [ "${MORTAR_SKIP_INTEGRATION:-}" != 1 ]; then
  # The Kubernetes test cluster's programs, built once per machine (about 10 minutes of both
  # cores), start building now, beside the checks, the unit tests and the image builds.
  .venv/bin/mortar testbed k8s build > "$logs/k8s-build.log" 2>&1 &
  k8sbuild=$!
fi
.venv/bin/ruff check mortar tests bench
.venv/bin/mypy mortar
if [ "${MORTAR_SKIP_INTEGRATION:-}" = 1 ]; then
  exec .venv/bin/python -m pytest tests "$@"
fi
.venv/bin/python -m pytest tests/unit "$@"

# Integration: every image built once (the default series, and 2026.1's core set for the two
# sessions that upgrade from it), then three lanes side by side: this machine's engine
# (build, all-in-one, upgrades, faults), the test bed, whose nodes run engines of their own,
# and the Kubernetes test cluster (its own containerd; it uses this engine only to build and
# copy images) followed by the highly available bed (3 control hosts, 1 compute host; it
# starts when the cluster is gone). Each session tags the images in a namespace of its own,
# so none removes what another runs; the one test that restarts the engine waits until no
# other session uses it, so its module runs last.
# What an interrupted earlier run left (a site still running, a bed, the cluster) goes first.
.venv/bin/python -m tests.integration.cleanup leftovers
IMAGES='^(haproxy|keepalived|mariadb-server|memcached|rabbitmq|ovn-northd|ovn-nb-db|ovn-sb-db|keystone|glance-api|placement-api|nova-api|nova-conductor|nova-scheduler|nova-compute|nova-libvirt|openvswitch|ovn-controller|neutron-server|neutron-ovn-metadata-agent|horizon|prometheus-server|prometheus-node-exporter|prometheus-mysqld-exporter|registry)$'
CORE='^(mariadb-server|memcached|rabbitmq|ovn-northd|ovn-nb-db|ovn-sb-db|keystone|glance-api|placement-api|nova-api|nova-conductor|nova-scheduler|nova-compute|nova-libvirt|openvswitch|ovn-controller|neutron-server|neutron-ovn-metadata-agent|horizon)$'
.venv/bin/mortar build --namespace mortar-test --tag it --logs-dir "$logs/build" "$IMAGES"
.venv/bin/mortar build --namespace mortar-test --release 2026.1 --tag it-2026.1 --logs-dir "$logs/build-2026.1" "$CORE"
export MORTAR_TEST_ENGINE_LOCK="$logs/engine.lock"
MORTAR_TEST_NAMESPACE=mortar-test-bed MORTAR_TEST_SHARES_ENGINE=1 .venv/bin/python -m pytest tests/integration/test_testbed.py \
  tests/integration/test_multihost.py --durations=15 "$@" > "$logs/bed.log" 2>&1 &
bed=$!
k8s_status=0
if ! wait "$k8sbuild"; then
  k8s_status=1
  echo "==== building the Kubernetes test cluster's programs failed ===="
  cat "$logs/k8s-build.log"
fi
# One lane: the Kubernetes session, then the HA session. The lane holds the engine shared from
# its start (the HA bed's registry and nodes run on this engine), so the all-in-one lane's
# engine restart waits for its end; neither session inherits the lock's descriptor.
(
  flock -s 9
  code=0
  MORTAR_TEST_NAMESPACE=mortar-test-k8s .venv/bin/python -m pytest tests/integration/test_k8s.py --durations=10 "$@" \
    > "$logs/k8s.log" 2>&1 9>&- || code=$?
  echo "$code" > "$logs/k8s.status"
  MORTAR_TEST_NAMESPACE=mortar-test-ha MORTAR_TEST_SHARES_ENGINE=1 .venv/bin/python -m pytest \
    tests/integration/test_ha.py --durations=15 "$@" > "$logs/ha.log" 2>&1 9>&-
) 9>>"$logs/engine.lock" &
lane=$!
aio=0
MORTAR_TEST_NAMESPACE=mortar-test-aio .venv/bin/python -m pytest tests/integration/test_build.py \
  tests/integration/test_deploy.py tests/integration/test_secretscan.py tests/integration/test_upgrade.py \
  tests/integration/test_faults.py --durations=25 "$@" || aio=$?
status=0
wait "$bed" || status=$?
ha_status=0
wait "$lane" || ha_status=$?
[ "$(cat "$logs/k8s.status" 2>/dev/null)" = 0 ] || k8s_status=1
echo "==== test bed session (tests/integration/test_testbed.py, test_multihost.py) ===="
cat "$logs/bed.log"
echo "==== Kubernetes session (tests/integration/test_k8s.py) ===="
cat "$logs/k8s.log"
echo "==== highly available session (tests/integration/test_ha.py) ===="
cat "$logs/ha.log"
.venv/bin/python -m tests.integration.cleanup mortar-test
# Each session's failures once more, last, where a reader of only the end of this output sees them.
for log in bed k8s ha; do
  if grep -q "^FAILED\|^ERROR" "$logs/$log.log"; then
    echo "==== the $log session's failures ===="
    sed -n '/short test summary info/,$p' "$logs/$log.log" | cut -c1-3000
  fi
done
[ "$aio" = 0 ] && [ "$status" = 0 ] && [ "$k8s_status" = 0 ] && [ "$ha_status" = 0 ]
