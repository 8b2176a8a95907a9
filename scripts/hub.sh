#!/usr/bin/env bash
# Install (npm, once) JupyterHub's proxy, configurable-http-proxy, outside the repository, for
# `farside up --hub` and the hub tests. Idempotent. Prints the proxy's executable path last.
#   scripts/hub.sh            install if needed, print the path
#   FARSIDE_HUB_DIR=/opt/x    install there instead of /tmp/farside-hub
# JupyterHub itself comes from PyPI (pip install jupyterhub oauthenticator jupyterlab).
set -euo pipefail
DIR=${FARSIDE_HUB_DIR:-/tmp/farside-hub}
CHP_VERSION=${FARSIDE_CHP_VERSION:-5.3.0}
APP=$DIR/chp
BIN=$APP/node_modules/.bin/configurable-http-proxy
mkdir -p "$APP"

command -v node >/dev/null || { echo "node is not installed (Node.js 20 or later)" >&2; exit 1; }
# the version is pinned so that a rerun does not silently upgrade the proxy under a running hub
want="{\"private\": true, \"dependencies\": {\"configurable-http-proxy\": \"$CHP_VERSION\"}}"
if [ "$(cat "$APP/package.json" 2>/dev/null)" != "$want" ] || [ ! -x "$BIN" ]; then
  echo "$want" >"$APP/package.json"
  (cd "$APP" && npm install --no-audit --no-fund --loglevel=error >"$DIR/npm.log" 2>&1) || {
    echo "npm install of configurable-http-proxy failed; see $DIR/npm.log" >&2; exit 1; }
fi
"$BIN" --version >/dev/null 2>&1 || { echo "$BIN does not run; see $DIR/npm.log" >&2; exit 1; }
echo "$BIN"
