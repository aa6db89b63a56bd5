#!/usr/bin/env bash
# Installs TwinView on Debian 12 (Python 3.11, node and npm), from the lock files requirements*.lock and
# web_client/package-lock.json, so every machine gets the versions the suite passed with.
#
#   ./setup.sh              what `twinview demo` and `twinview build` need
#   ./setup.sh --scans      that, plus open3d for `twinview build --mesh-scans` (about 1 GB more)
#   ./setup.sh --test       all of it, plus the test tools, Chromium and Mosquitto (what ./check.sh needs)
#   ./setup.sh --no-system  skip the Debian packages (they were installed another way); says which it needs
#
# The Debian packages need root: as another user it uses sudo when it can, else it prints the one apt-get
# command to run as root. Safe to run again: each step does only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

mode=app system=1
for arg in "$@"; do
  case "$arg" in
    --test) mode=test ;;
    --scans) [ "$mode" = test ] || mode=scans ;;
    --no-system) system=0 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown option $arg (see ./setup.sh --help)" >&2; exit 2 ;;
  esac
done

start=$SECONDS
step() { printf 'setup: %-56s ' "$1"; step_start=$SECONDS; }
done_step() { echo "done ($((SECONDS - step_start)) s)"; }
# Runs a command with its output kept aside: shown only if it fails (then setup stops).
quietly() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then echo "failed"; cat "$log" >&2; rm -f "$log"; exit 1; fi
  rm -f "$log"
}

# --- Debian packages ---------------------------------------------------------------------------------------
# g++ and the Python headers build meshoptimizer (PyPI has no wheel of it); libgl1, libegl1 and libgomp1 are
# loaded by the OCP (STEP) and IfcOpenShell wheels, libusb by open3d (scans); Chromium and Mosquitto are the
# tests' browser and broker, Redis, PostgreSQL and HAProxy the engines of a scaled-out deployment, strace shows a test that no file outside the input's folder is opened.
PY=${PYTHON:-python3}
packages=(g++ libgl1 libegl1 libgomp1)
"$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || packages+=(python3-dev)
[ "$mode" = app ] || packages+=(libusb-1.0-0)
[ "$mode" = test ] && packages+=(chromium mosquitto strace redis-server postgresql haproxy)
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  if [ "$p" = g++ ]; then command -v g++ >/dev/null && continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$system" = 0 ]; then
    echo "setup: --no-system: make sure these Debian packages are installed: ${missing[*]}"
  else
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else
        echo "setup: needs Debian packages; as root run: apt-get install -y --no-install-recommends ${missing[*]}" >&2
        echo "setup: then run ./setup.sh $* again (or ./setup.sh --no-system $* to skip this check)" >&2
        exit 2
      fi
    fi
    step "Debian packages: ${missing[*]}"
    quietly $sudo apt-get update -qq
    quietly $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # Debian starts these as system services; the tests start their own, on free ports.
    for service in mosquitto redis-server postgresql haproxy; do
      (command -v systemctl >/dev/null && $sudo systemctl disable --now "$service" >/dev/null 2>&1) || true
    done
    done_step
  fi
fi

# --- Python packages ---------------------------------------------------------------------------------------
# Exact versions with hashes. meshoptimizer is built from source against the locked build tools (no build
# isolation, which would fetch whatever is newest). A stamp skips the step when nothing changed.
case "$mode" in app) lock=requirements.lock ;; test) lock=requirements-dev.lock ;; *) lock=requirements-$mode.lock ;; esac
stamp=.venv/.twinview-installed
want=$(cat requirements-build.lock "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  step "Python: creating .venv"
  quietly "$PY" -m venv .venv
  done_step
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip=(.venv/bin/python -m pip install --disable-pip-version-check)
  step "Python: build tools (requirements-build.lock)"
  quietly "${pip[@]}" --require-hashes -r requirements-build.lock
  done_step
  step "Python: $(grep -c '==' "$lock") packages from $lock"
  quietly "${pip[@]}" --require-hashes --no-build-isolation -r "$lock"
  done_step
  step "Python: twinview itself (editable)"
  quietly "${pip[@]}" --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
  done_step
else
  echo "setup: Python packages match $lock"
fi

# --- web client ---------------------------------------------------------------------------------------------
lock_sum=$(sha256sum web_client/package-lock.json | cut -d' ' -f1)
if [ "$(cat web_client/node_modules/.twinview-lock 2>/dev/null)" != "$lock_sum" ]; then
  step "npm: web_client/node_modules (package-lock.json)"
  quietly npm --prefix web_client ci --no-audit --no-fund
  echo "$lock_sum" > web_client/node_modules/.twinview-lock
  done_step
else
  echo "setup: npm packages match web_client/package-lock.json"
fi
step "web client: bundling web_client/dist"
quietly node web_client/build.mjs
done_step
echo "setup: done in $((SECONDS - start)) s"
