#!/usr/bin/env bash
# Install (Debian's slurm-wlm and munge, if missing) and start a single-node Slurm for the
# tests: node `localhost` with SLURM_SLOTS oversubscribed cores and SLURM_GPUS fake GPUs (GRES),
# partitions `cpu` (default) and `gpu`. No systemd, no accounting database.
# Idempotent and quick when it already runs; restarts the daemons when the config changed.
# Config, state and logs live in ${FARSIDE_SLURM_DIR:-/tmp/farside-slurm}; /etc/slurm/slurm.conf
# points there so that sbatch/squeue work without SLURM_CONF. Prints that directory.
#   scripts/slurm.sh          start (install first if needed)
#   scripts/slurm.sh stop     stop the daemons
set -euo pipefail
DIR=${FARSIDE_SLURM_DIR:-/tmp/farside-slurm}
SLOTS=${SLURM_SLOTS:-16}
GPUS=${SLURM_GPUS:-4}
export SLURM_CONF=$DIR/slurm.conf

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_daemon() {  # pidfile: TERM, wait up to 5 s, then KILL
  local pf=$1 p i
  if alive "$pf"; then
    p=$(cat "$pf")
    kill "$p"
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$pf"
}

if [ "${1:-start}" = stop ]; then
  stop_daemon "$DIR/run/slurmd.pid"
  stop_daemon "$DIR/run/slurmctld.pid"
  echo "slurm stopped"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "scripts/slurm.sh must run as root (it installs packages and runs slurmd as root)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p "$DIR"/{state,spool,log,run} /etc/slurm

# Memory: the machine's, less 1 GiB for the system, but at least 1 GiB per slot: pilots of
# the tests use far less than their slot, and config_overrides lets slurmd accept the claim.
MEM=$(($(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) - 1024))
[ "$MEM" -lt $((SLOTS * 1024)) ] && MEM=$((SLOTS * 1024))

cat >"$DIR/slurm.conf.new" <<CONF
# written by scripts/slurm.sh; edits are overwritten
ClusterName=farside
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# no cgroups or systemd in containers and CI runners
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
# without a default memory every job takes the whole node and jobs run one at a time
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# schedule within a second, not the default minute: tests wait on it
SchedulerParameters=sched_interval=1,bf_interval=1,defer_batch=0
# more slots than cores: pilots of the tests mostly wait
SlurmdParameters=config_overrides
MessageTimeout=10
SlurmdTimeout=300
InactiveLimit=0
# ended jobs stay in squeue --states=all for 5 minutes: how a plugin learns why they ended
MinJobAge=300
# job ids above any process id (Linux's limit is 2^22): nothing that mistakes a batch id for
# a pid (a test harness cleaning up local pilots) can ever signal a real process
FirstJobId=10000000
KillWait=5
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$SLOTS Boards=1 SocketsPerBoard=1 CoresPerSocket=$SLOTS ThreadsPerCore=1 RealMemory=$MEM Gres=gpu:$GPUS State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
CONF
# GPUs by count: Slurm 22.05's slurmd drops GPUs without File= ("Removing file-less GPU"),
# and wants character devices there, so each fake GPU is a link to /dev/null
mkdir -p "$DIR/dev"
for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$DIR/dev/gpu$i"; done
echo "NodeName=localhost Name=gpu File=$DIR/dev/gpu[0-$((GPUS - 1))]" >"$DIR/gres.conf.new"

changed=0
for f in slurm.conf gres.conf; do
  if cmp -s "$DIR/$f.new" "$DIR/$f"; then
    rm "$DIR/$f.new"
  else
    mv "$DIR/$f.new" "$DIR/$f"
    changed=1
  fi
done
# client commands read /etc/slurm/slurm.conf unless SLURM_CONF says otherwise
for f in slurm.conf gres.conf; do
  [ "$(readlink "/etc/slurm/$f" 2>/dev/null)" = "$DIR/$f" ] || ln -sfn "$DIR/$f" "/etc/slurm/$f"
done

# munge: Debian's package creates the key; make one where it did not (e.g. a bare image)
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  chmod 755 /run/munge
  rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

if [ "$changed" = 1 ]; then
  stop_daemon "$DIR/run/slurmd.pid"
  stop_daemon "$DIR/run/slurmctld.pid"
fi
if ! alive "$DIR/run/slurmctld.pid"; then
  /usr/sbin/slurmctld -i -f "$SLURM_CONF" # -i: start even if saved state does not fit
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
if ! alive "$DIR/run/slurmd.pid"; then
  /usr/sbin/slurmd -N localhost -f "$SLURM_CONF"
fi

for _ in $(seq 150); do
  state=$(sinfo --noheader --nodes=localhost --format=%T 2>/dev/null | head -n1 || true)
  case "$state" in
    *'*') ;; # not responding (yet)
    idle* | mixed* | alloc*) echo "$DIR"; exit 0 ;;
    down* | drain* | fail*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
  esac
  sleep 0.1
done
echo "slurm did not become ready (node state: ${state:-unknown}); see $DIR/log/slurmctld.log" \
  "and $DIR/log/slurmd.log" >&2
exit 1
