#!/usr/bin/env bash
# Install (Debian's postgresql-15, if missing) and start a private PostgreSQL for the tests.
# Idempotent; no systemd. Listens on 127.0.0.1:${FARSIDE_PG_PORT:-54329}, data in
# ${FARSIDE_PG_DIR:-/tmp/farside-postgres}. Prints the DSN of role/database "farside".
#   scripts/postgres.sh          start (install first if needed)
#   scripts/postgres.sh stop     stop it
set -euo pipefail
DIR=${FARSIDE_PG_DIR:-/tmp/farside-postgres}
PORT=${FARSIDE_PG_PORT:-54329}
DATA=$DIR/data
RUN=$DIR/run
DSN="postgresql+psycopg://farside:farside@127.0.0.1:$PORT/farside"

find_bin() {
  for v in 17 16 15; do
    [ -x "/usr/lib/postgresql/$v/bin/postgres" ] && { echo "/usr/lib/postgresql/$v/bin"; return; }
  done
  command -v pg_ctl >/dev/null && dirname "$(command -v pg_ctl)"
}

as_owner() {  # run as the postgres user when we are root (initdb refuses root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

BIN=$(find_bin || true)
if [ "${1:-start}" = stop ]; then
  [ -n "$BIN" ] && [ -s "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  echo "postgres stopped"
  exit 0
fi

if [ -z "$BIN" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed; run as root or: apt-get install postgresql" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  BIN=$(find_bin)
fi

mkdir -p "$DIR" "$RUN"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$DIR" "$RUN"; fi
if [ ! -s "$DATA/PG_VERSION" ]; then
  as_owner mkdir -p "$DATA"
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --no-sync >/dev/null
  cat <<CONF | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
# test database: durability traded for speed
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
CONF
  NEW=1
fi
if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/postgres.log" -w -t 60 start >/dev/null
fi
if [ "${NEW:-0}" = 1 ]; then
  as_owner "$BIN/psql" -h "$RUN" -p "$PORT" -U postgres -qAt \
    -c "CREATE ROLE farside LOGIN CREATEDB PASSWORD 'farside'" \
    -c "CREATE DATABASE farside OWNER farside" >/dev/null
fi
echo "$DSN"
