#!/usr/bin/env bash
# Brings up a one-node swarm on this machine (embedded store) and deploys examples/stacks/hello.yml.
#
#   scripts/up.sh              # data in ./.swarm-data, API on 127.0.0.1:2377
#   SWARM_DATA=/var/lib/swarm scripts/up.sh
#
# The server keeps running in the background; its log is $SWARM_DATA/server.log and its pid
# $SWARM_DATA/server.pid. Stop it with: kill "$(cat "$SWARM_DATA/server.pid")"
set -euo pipefail
cd "$(dirname "$0")/.."
data="${SWARM_DATA:-$PWD/.swarm-data}"
listen="${SWARM_LISTEN:-127.0.0.1:2377}"
scripts/deps.sh
cargo build --release --workspace --locked
mkdir -p "$data"
if [ -f "$data/server.pid" ] && kill -0 "$(cat "$data/server.pid")" 2>/dev/null; then
  echo "swarm server already running (pid $(cat "$data/server.pid"))"
else
  rm -f "$data/admin.conf"
  nohup target/release/swarm server --data-dir "$data" --listen "$listen" >"$data/server.log" 2>&1 &
  echo $! >"$data/server.pid"
  for _ in $(seq 1 100); do
    [ -f "$data/admin.conf" ] && break
    sleep 0.1
  done
  [ -f "$data/admin.conf" ] || { echo "swarm server did not start; see $data/server.log" >&2; exit 1; }
fi
export SWARM_CONFIG="$data/admin.conf"
if [ -x examples/apps/build.sh ]; then
  examples/apps/build.sh
fi
target/release/swarm apply -f examples/stacks/hello.yml
echo
echo "swarm is up. Use it with:  export SWARM_CONFIG=$data/admin.conf; target/release/swarm get services"
