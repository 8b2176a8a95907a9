#!/usr/bin/env bash
# Stop the test pool that scripts/htcondor.sh started and unmount what it bind-mounted.
# Idempotent. The chroot stays for the next start; to delete it, run this first (an rm -rf
# with the bind mounts in place would walk into /tmp and this repository), then
#   rm -rf --one-file-system ${FARSIDE_INFRA_DIR:-/var/tmp/farside-infra}/htcondor
#   scripts/htcondor-stop.sh [--keep-mounts]
set -euo pipefail
INFRA=${FARSIDE_INFRA_DIR:-/var/tmp/farside-infra}
R=$INFRA/htcondor/root
PIDFILE=$R/run/condor/master.pid
[ "$(id -u)" = 0 ] || { echo "htcondor-stop.sh: needs root" >&2; exit 1; }
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  pid=$(cat "$PIDFILE")
  # condor_off lets the master stop its daemons (and their jobs) in order
  chroot "$R" condor_off -master >/dev/null 2>&1 || kill "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
fi
rm -f "$PIDFILE"
if [ "${1:-}" != --keep-mounts ] && [ -d "$R" ]; then
  for m in $(awk -v r="$R" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
fi
echo "htcondor stopped"
