#!/usr/bin/env bash
# Installs the system packages swarm's build and tests need, if they are missing:
#   protoc  (protobuf-compiler) — etcd-client's build script runs it;
#   etcd    (etcd-server)       — the store conformance and multi-apiserver tests run a real etcd.
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
