#!/usr/bin/env bash
# Install (npm, once) and start a real OIDC provider for the tests: panva's oidc-provider with
# the users and clients in scripts/oidc/. Idempotent; restarts the provider when its files
# change. Listens on 127.0.0.1:${FARSIDE_OIDC_PORT:-9090}; node_modules and state live in
# ${FARSIDE_OIDC_DIR:-/tmp/farside-oidc}, outside the repository. Prints the issuer URL last.
#   scripts/oidc.sh          start (install first if needed)
#   scripts/oidc.sh stop     stop it
set -euo pipefail
SRC="$(cd "$(dirname "$0")/oidc" && pwd)"
DIR=${FARSIDE_OIDC_DIR:-/tmp/farside-oidc}
PORT=${FARSIDE_OIDC_PORT:-9090}
ISSUER="http://127.0.0.1:$PORT"
APP=$DIR/app              # package.json, provider.mjs and node_modules (shared by all ports)
STATE=$DIR/port-$PORT     # pid, log and signing keys of the provider on this port
mkdir -p "$APP" "$STATE"

running() { [ -s "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; }
stop() {
  if running; then
    kill "$(cat "$STATE/pid")"
    for _ in $(seq 50); do running || break; sleep 0.1; done
  fi
  rm -f "$STATE/pid"
}

if [ "${1:-start}" = stop ]; then stop; echo "oidc provider on port $PORT stopped"; exit 0; fi

command -v node >/dev/null || { echo "node is not installed (Node.js 20 or later)" >&2; exit 1; }
if ! cmp -s "$SRC/package.json" "$APP/package.json" || [ ! -d "$APP/node_modules/oidc-provider" ]; then
  cp "$SRC/package.json" "$APP/package.json"
  (cd "$APP" && npm install --no-audit --no-fund --loglevel=error >"$DIR/npm.log" 2>&1) || {
    echo "npm install of oidc-provider failed; see $DIR/npm.log" >&2; exit 1; }
fi
# the module imports oidc-provider, so it must sit next to node_modules
cp "$SRC/provider.mjs" "$APP/provider.mjs"

stamp=$(cat "$SRC"/package.json "$SRC"/provider.mjs "$SRC"/users.json "$SRC"/clients.json | sha256sum)
if running && [ "$(cat "$STATE/stamp" 2>/dev/null)" != "$stamp" ]; then stop; fi
if ! running; then
  OIDC_PORT=$PORT OIDC_ISSUER=$ISSUER OIDC_CONFIG=$SRC OIDC_STATE=$STATE \
    nohup node "$APP/provider.mjs" >"$STATE/provider.log" 2>&1 &
  echo $! >"$STATE/pid"
  echo "$stamp" >"$STATE/stamp"
fi
for _ in $(seq 100); do
  curl -sf "$ISSUER/.well-known/openid-configuration" >/dev/null && { echo "$ISSUER"; exit 0; }
  running || break
  sleep 0.1
done
echo "the OIDC provider did not start on $ISSUER; its log ($STATE/provider.log) ends:" >&2
tail -n 20 "$STATE/provider.log" >&2
exit 1
