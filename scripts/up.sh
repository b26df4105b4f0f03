#!/usr/bin/env bash
# Brings up a one-node swarm on this machine — apiserver on the embedded store, every controller
# and a local agent on the Docker engine, in one `swarm server` process — builds the demo images
# (no registry needed) and deploys examples/stacks/hello.yml: 3 replicas behind the routing mesh
# on port 8080.
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
  nohup target/release/swarm server --data-dir "$data" --listen "$listen" --agent docker \
    >"$data/server.log" 2>&1 &
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
# apply waits until the services converge, showing Docker's progress display.
target/release/swarm apply -f examples/stacks/hello.yml --timeout 120s
echo
target/release/swarm service ls
echo
echo "curl http://127.0.0.1:8080/ :"
curl -s --max-time 5 http://127.0.0.1:8080/ || echo "(no answer yet; see $data/server.log)"
echo
echo "swarm is up. Use it with:  export SWARM_CONFIG=$data/admin.conf; target/release/swarm get services"
