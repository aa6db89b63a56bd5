#!/usr/bin/env bash
# Installs the peer viewer of bench/plant_viewers.py (xeokit-convert and the xeokit SDK) into bench/peers/node_modules,
# from package-lock.json. Bench-only: neither the app nor the test suite needs it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.twinview-lock 2>/dev/null)" != "$sum" ]; then
  npm ci --no-audit --no-fund --ignore-scripts
  echo "$sum" > node_modules/.twinview-lock
fi
echo "bench/peers: npm packages match package-lock.json"
