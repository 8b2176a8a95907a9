#!/usr/bin/env bash
# A personal HTCondor pool for the tests (and for trying the htcondor site by hand).
# Idempotent; no systemd; loopback only; needs root (debootstrap, chroot, mount).
#
# Debian 12 has no HTCondor and PyPI's `htcondor` wheel holds only the Python bindings, so
# the daemons come from Debian trixie's `htcondor` package, installed in a debootstrap
# chroot under ${FARSIDE_INFRA_DIR:-/var/tmp/farside-infra}/htcondor/root (built once,
# reused). Jobs run inside that chroot, so what pilots need is bind-mounted into it, each at
# its own path: this repository (its .venv and editable install), the Python its venv links
# to, and .../htcondor/shared, a world-writable directory where gateways whose pilots run in
# the pool keep their state (the tests put theirs there). The host's /tmp is not shared:
# a checkout under a private directory (mktemp -d makes them 0700) would be out of the pool
# user's reach through it, while a parent made inside the chroot is not.
#
#   scripts/htcondor.sh           start (build first if needed); the last line printed is
#                                 the directory of the condor_* wrappers (the site option
#                                 `bin_dir`), e.g. BIN=$(bash scripts/htcondor.sh)
#   scripts/htcondor.sh stop      stop the pool and unmount (scripts/htcondor-stop.sh)
#
# HTCondor never runs jobs as root, and refuses root's submissions, so the wrappers run the
# tools as the pool's user (FARSIDE_HTCONDOR_USER, default "farside", uid 2900, made inside
# the chroot only): pilots run as that uid and need to write their gateway's state dir.
#
# Knobs: FARSIDE_INFRA_DIR, FARSIDE_HTCONDOR_CPUS (slots' cores, oversubscribed; default
# 16), FARSIDE_HTCONDOR_MEMORY (MiB; default 65536), FARSIDE_HTCONDOR_USER,
# FARSIDE_DEBIAN_MIRROR.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
if [ "${1:-start}" = stop ]; then exec bash "$HERE/htcondor-stop.sh"; fi
INFRA=${FARSIDE_INFRA_DIR:-/var/tmp/farside-infra}
DIR=$INFRA/htcondor
R=$DIR/root
BIN=$DIR/bin
CPUS=${FARSIDE_HTCONDOR_CPUS:-16}
MEMORY=${FARSIDE_HTCONDOR_MEMORY:-65536}
POOL_USER=${FARSIDE_HTCONDOR_USER:-farside}
t0=$(date +%s)
say() { echo "htcondor.sh: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mount); run: sudo bash $0"
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$DIR"

# Python of the repository's venv: the venv links to its base interpreter, which must be
# visible at the same path inside the chroot.
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY=$(command -v python3)
PYBASE=$("$PY" -c "import os, sys; print(os.path.realpath(sys.base_prefix))")

# Bind mounts, in mount order (stop.sh unmounts in reverse), each at its host path. Their
# parents are made inside the chroot (0755), so the pool's user reaches them whatever the
# host's parents allow.
SHARE=$DIR/shared
SHARED=("$SHARE" "$REPO" "$PYBASE")
umask 022
mkdir -p "$SHARE"
chmod 1777 "$SHARE"

mount_all() {
  mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
  # rbind: the starter needs /dev/shm (else "Nanny failed to start") and /dev/pts
  if ! mountpoint -q "$R/dev"; then
    mount --rbind /dev "$R/dev"
    mount --make-rslave "$R/dev"  # never propagate an unmount back to the host's /dev
  fi
  mountpoint -q "$R/sys" || mount -t sysfs sys "$R/sys"
  # the layout before this script stopped sharing /tmp: the bind would hide the chroot's own
  if mountpoint -q "$R/tmp"; then umount -l "$R/tmp"; fi
  local d
  for d in "${SHARED[@]}"; do
    mkdir -p "$R$d"
    # a mount left from a checkout since deleted and cloned again at the same path shows
    # the old, deleted directory: mount the current one instead
    if mountpoint -q "$R$d" && [ "$(stat -c %d:%i "$d")" != "$(stat -c %d:%i "$R$d")" ]; then
      umount -l "$R$d"
    fi
    if ! mountpoint -q "$R$d"; then
      mount --bind "$d" "$R$d"
      mount --make-rslave "$R$d"
    fi
  done
}

unmount_all() {  # before any rm -rf of the chroot: rm would walk into the bind mounts
  local m
  for m in $(awk -v r="$R" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

mirror() {
  if [ -n "${FARSIDE_DEBIAN_MIRROR:-}" ]; then echo "$FARSIDE_DEBIAN_MIRROR"; return; fi
  local m  # the machine's own Debian mirror: the first (non-security) URI of its apt sources
  m=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$m" ] || m=$(grep -hoE '^deb +(\[[^]]*\] +)?[^ ]+' /etc/apt/sources.list 2>/dev/null \
      | awk '{print $NF}' | grep -v security | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

build() {
  if [ -d "$R" ] && [ ! -e "$R/.farside-complete" ]; then
    say "removing an incomplete chroot at $R"
    unmount_all
    rm -rf --one-file-system "$R"
  fi
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
  fi
  local m; m=$(mirror)
  say "debootstrap trixie from $m into $R (about a minute)"
  debootstrap --variant=minbase trixie "$R" "$m" >"$DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $DIR/debootstrap.log"
  cp /etc/resolv.conf "$R/etc/resolv.conf"
  mount_all
  say "installing htcondor in the chroot (about a minute)"
  chroot "$R" sh -c 'apt-get update -q && apt-get install -y --no-install-recommends htcondor' \
    >"$DIR/apt.log" 2>&1 || die "apt-get install htcondor failed in the chroot; see $DIR/apt.log"
  touch "$R/.farside-complete"
}

[ -e "$R/.farside-complete" ] || build
mount_all
cp /etc/hosts "$R/etc/hosts"
# jobs run as the pool's user: let them reach an interpreter under /root
chmod 711 "$R/root"
if ! chroot "$R" id -u "$POOL_USER" >/dev/null 2>&1; then
  chroot "$R" useradd --no-create-home --home-dir /nonexistent --shell /bin/sh \
    --uid "${FARSIDE_HTCONDOR_UID:-2900}" --user-group "$POOL_USER"
fi
# numeric: the host need not know the pool's user
POOL_IDS="$(chroot "$R" id -u "$POOL_USER"):$(chroot "$R" id -g "$POOL_USER")"

CONFIG=$(cat <<CONF
# written by farside scripts/htcondor.sh: a personal pool on loopback, for tests
CONDOR_HOST = 127.0.0.1
COLLECTOR_HOST = 127.0.0.1:9618
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
# else the daemons also advertise the machine's IPv6 address
ENABLE_IPV6 = False
USE_SHARED_PORT = False
use ROLE : Personal
use SECURITY : HOST_BASED
ALLOW_READ = 127.0.0.1, \$(ALLOW_READ)
ALLOW_WRITE = 127.0.0.1, \$(ALLOW_WRITE)
ALLOW_ADMINISTRATOR = 127.0.0.1, \$(ALLOW_ADMINISTRATOR)
ALLOW_NEGOTIATOR = 127.0.0.1, \$(ALLOW_NEGOTIATOR)
UID_DOMAIN = farside.test
TRUST_UID_DOMAIN = True
# one partitionable slot, cores oversubscribed: test pilots mostly wait on the network,
# and they should not queue behind each other on a 2-core machine
NUM_CPUS = $CPUS
MEMORY = $MEMORY
NUM_SLOTS = 1
NUM_SLOTS_TYPE_1 = 1
SLOT_TYPE_1 = 100%
SLOT_TYPE_1_PARTITIONABLE = True
START = TRUE
SUSPEND = FALSE
PREEMPT = FALSE
KILL = FALSE
WANT_SUSPEND = FALSE
# short cycles: test pilots should start within a second or two
NEGOTIATOR_INTERVAL = 1
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
SCHEDD_INTERVAL = 2
SCHEDD_MIN_INTERVAL = 1
UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 2
NEGOTIATOR_UPDATE_INTERVAL = 2
PERIODIC_EXPR_INTERVAL = 5
# a chroot has no cgroups and cannot unshare mount or pid namespaces
BASE_CGROUP =
CGROUP_MEMORY_LIMIT_POLICY = none
MOUNT_UNDER_SCRATCH =
USE_PID_NAMESPACES = False
CONF
)
CONF_FILE=$R/etc/condor/config.d/99-farside.config
changed=0
if [ ! -f "$CONF_FILE" ] || [ "$(cat "$CONF_FILE")" != "$CONFIG" ]; then
  printf '%s\n' "$CONFIG" >"$CONF_FILE"
  changed=1
fi
chroot "$R" sh -c 'mkdir -p /var/log/condor /var/lib/condor/spool /var/lib/condor/execute /run/condor \
  && chown -R condor:condor /var/log/condor /var/lib/condor /run/condor'

# Host-side wrappers: each condor_* tool runs inside the chroot, in the caller's directory
# (which must be a shared path: under $SHARE or this repository; else in /).
mkdir -p "$BIN"
cat >"$BIN/condor_wrap" <<WRAP
#!/bin/sh
# written by farside scripts/htcondor.sh: run an HTCondor tool of the chroot'ed test pool
tool=\$(basename "\$0")
[ "\$(id -u)" = 0 ] || { echo "\$tool: the test pool's tools need root (chroot $R)" >&2; exit 1; }
# as the pool's user: HTCondor refuses jobs submitted by root
exec chroot --userspec="$POOL_IDS" "$R" /bin/sh -c 'cd "\$1" 2>/dev/null || cd /; shift; exec "\$@"' sh "\$PWD" "\$tool" "\$@"
WRAP
chmod 755 "$BIN/condor_wrap"
for tool in condor_submit condor_q condor_rm condor_history condor_status condor_hold \
            condor_release condor_qedit condor_config_val condor_off condor_restart; do
  ln -sf condor_wrap "$BIN/$tool"
done

PIDFILE=$R/run/condor/master.pid
running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
if running && [ "$changed" = 1 ]; then
  say "configuration changed: restarting the pool"
  bash "$HERE/htcondor-stop.sh" --keep-mounts >/dev/null
  mount_all
fi
if ! running; then
  chroot "$R" condor_master -pidfile /run/condor/master.pid
fi
slots=""
for _ in $(seq 300); do
  slots=$(chroot "$R" condor_status -af Name Cpus 2>/dev/null | grep slot || true)
  [ -n "$slots" ] && break
  sleep 0.2
done
[ -n "$slots" ] || die "no slot appeared within 60 s; see $R/var/log/condor/"
# Pilots run this repository's Python as the pool's user: check it can, now, rather than
# let every pilot die unseen in the queue.
if [ -x "$REPO/.venv/bin/python" ] \
    && ! chroot --userspec="$POOL_IDS" "$R" "$PY" -c 'import farside_pilot' 2>"$DIR/check.err"; then
  die "the pool's user ($POOL_USER) cannot run $PY -c 'import farside_pilot' inside the chroot:
$(tail -5 "$DIR/check.err")
The checkout and its .venv must be readable by others (a clone made under umask 077 is not):
chmod -R o+rX $REPO"
fi
say "pool up ($(echo "$slots" | head -1)) in $(( $(date +%s) - t0 ))s; shared directory $SHARE"
echo "$BIN"
