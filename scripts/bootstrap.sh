#!/bin/bash
# Prepares this host for mortar: a virtualenv with mortar installed (./.venv) and a running
# Docker Engine (Debian's docker.io, installed when missing). Idempotent; needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "run as root (mortar installs and starts the Docker Engine)" >&2; exit 2; fi
PY=${PYTHON:-python3}
# Host tools: venv for mortar, skopeo to push to a plain-HTTP registry the engine does not
# trust, ssh for the Ansible executor and for reaching guests, ping for Tempest's checks of
# floating IPs from this host.
missing=()
"$PY" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v ping >/dev/null || missing+=(iputils-ping)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/mortar engine setup
