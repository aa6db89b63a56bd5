#!/usr/bin/env bash
# Installs everything TwinView needs on a fresh Debian 12 machine with Python 3.11 and node/npm:
# Debian packages (GL libs for open3d/OCP, Chromium for browser tests, Mosquitto for MQTT),
# a virtualenv in .venv with the package and its test extras, and the npm tools in web_client/.
# Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(libgl1 libegl1 libgomp1 libusb-1.0-0 libxrender1 libxext6 libsm6 libx11-6 chromium mosquitto)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts mosquitto as a system service; the tests start their own broker.
  (command -v systemctl >/dev/null && $SUDO systemctl disable --now mosquitto >/dev/null 2>&1) || true
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing Python packages (first run takes a few minutes)"
.venv/bin/python -m pip install -q -e '.[test]'

if [ -f web_client/package.json ]; then
  echo "setup: installing npm packages in web_client/"
  (cd web_client && npm ci --no-audit --no-fund --loglevel=error)
  if [ -f web_client/build.mjs ]; then (cd web_client && node build.mjs); fi
fi
echo "setup: done"
