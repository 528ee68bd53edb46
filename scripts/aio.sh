#!/bin/bash
# The all-in-one main job on a fresh machine: engine, then the core image set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/mortar build --profile core --summary-json build-out/summary.json "$@"
echo "images built; summary: build-out/summary.json, manifests: build-out/manifests/"
