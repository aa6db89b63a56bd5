#!/usr/bin/env bash
# The README's two commands on a bare Debian 12, as a new user meets them: a `debootstrap --variant=minbase
# bookworm` root with only python3 python3-venv nodejs npm git ca-certificates, as root, a clone of this
# repository's HEAD (commit first: uncommitted changes are not in it) and ../shared beside it when present.
#
#   sudo tests/fresh_machine.sh [--keep] [--only demo|test] [WORKDIR]
#
# Runs `./setup.sh && .venv/bin/twinview demo` (stopped once /api/health answers), then
# `./setup.sh --test && ./check.sh`, then checks that `git status` is clean; prints each phase's time and the
# install's size. Needs root (debootstrap, chroot, mounts) and network (Debian, PyPI, npm); it is run by
# hand, not by .ci/run. WORKDIR defaults to a new folder under /var/tmp, removed at the end unless --keep.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
keep=0 only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --only) only=$2; shift ;;
    *) work=$1 ;;
  esac
  shift
done
work=${work:-$(mktemp -d /var/tmp/twinview-fresh.XXXXXX)}
root=$work/root
[ "$(id -u)" -eq 0 ] || { echo "fresh_machine: run as root (debootstrap and chroot need it)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "fresh_machine: apt-get install debootstrap first" >&2; exit 2; }

say() { echo "fresh_machine: $*"; }
cleanup() {
  for m in dev/shm dev/pts sys proc; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  if [ "$keep" = 0 ]; then rm -rf "$work"; else say "kept $work"; fi
}
trap cleanup EXIT

t=$SECONDS
say "debootstrap --variant=minbase bookworm into $root"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
# The root's own /dev (debootstrap made its nodes), not the host's: nothing in the root can touch the host's.
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
mount -t tmpfs -o size=2g tmpfs "$root/dev/shm"  # Chromium needs a writable /dev/shm
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Where this host's network intercepts TLS, its local CAs (/usr/local/share/ca-certificates) are trusted in the
# root too, as an administrator of such a network would do; pip and npm are pointed at the system bundle.
tls_env=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates" && cp /usr/local/share/ca-certificates/*.crt "$_"
  bundle=/etc/ssl/certs/ca-certificates.crt
  tls_env=(PIP_CERT=$bundle NODE_EXTRA_CA_CERTS=$bundle SSL_CERT_FILE=$bundle)
fi
in_root() { chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 "${tls_env[@]}" bash -c "$1"; }
say "apt-get install python3 python3-venv nodejs npm git ca-certificates"
in_root "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv nodejs npm git ca-certificates >/dev/null"
say "bare machine ready in $((SECONDS - t)) s"

git clone -q "$repo" "$root/root/twinview"
[ -d "$repo/../shared" ] && cp -a "$repo/../shared" "$root/root/shared"

if [ "$only" != test ]; then
  say "README command 1: ./setup.sh && .venv/bin/twinview demo"
  t=$SECONDS
  in_root 'cd /root/twinview && ./setup.sh'
  say "setup (app) took $((SECONDS - t)) s; .venv is $(du -sh "$root/root/twinview/.venv" | cut -f1), $(in_root '/root/twinview/.venv/bin/python -m pip list 2>/dev/null | tail -n +3 | wc -l') packages"
  in_root 'cd /root/twinview && { .venv/bin/twinview demo > /tmp/demo.log 2>&1 & echo $! > /tmp/demo.pid; } &&
    for i in $(seq 120); do
      python3 -c "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8800/api/health\", timeout=2)" 2>/dev/null && break
      sleep 1
    done
    python3 -c "import urllib.request, json; print(\"health:\", json.load(urllib.request.urlopen(\"http://127.0.0.1:8800/api/health\"))[\"status\"])"
    kill $(cat /tmp/demo.pid); wait; grep -v "token=" /tmp/demo.log'
  in_root 'cd /root/twinview && test -z "$(git status --porcelain)"' || { say "git status is not clean after demo"; in_root 'cd /root/twinview && git status --short'; exit 1; }
  say "demo: served, and git status is clean"
fi

if [ "$only" != demo ]; then
  say "README command 2: ./setup.sh --test && ./check.sh"
  t=$SECONDS
  in_root 'cd /root/twinview && ./setup.sh --test'
  say "setup (test) took $((SECONDS - t)) s; .venv is $(du -sh "$root/root/twinview/.venv" | cut -f1)"
  t=$SECONDS
  in_root 'cd /root/twinview && ./check.sh'
  say "check took $((SECONDS - t)) s"
  in_root 'cd /root/twinview && test -z "$(git status --porcelain)"' || { say "git status is not clean after the suite"; in_root 'cd /root/twinview && git status --short'; exit 1; }
  say "suite: passed, and git status is clean"
fi
say "all passed"
