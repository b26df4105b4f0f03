#!/usr/bin/env bash
# Builds the demo images locally, with no registry and no base image download:
#   swarm-examples/hello:1    the demo app, version 1
#   swarm-examples/hello:2    the same app reporting version 2 (for rolling updates)
#   swarm-examples/hello:bad  exits with code 1 at start (for failed updates and rollback)
# Each image is FROM scratch plus one statically linked binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="$(rustc -vV | sed -n 's/^host: //p')"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
for version in 1 2; do
  HELLO_VERSION="$version" RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p swarm-hello --target "$target" \
    --target-dir target/hello-v"$version" >&2
  cp "target/hello-v$version/$target/release/hello" "$ctx/hello-$version"
done
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
ARG VERSION
COPY hello-${VERSION} /hello
ENV PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD ["/hello", "probe"]
ENTRYPOINT ["/hello"]
DOCKERFILE
docker build -q --build-arg VERSION=1 -t swarm-examples/hello:1 "$ctx" >/dev/null
docker build -q --build-arg VERSION=2 -t swarm-examples/hello:2 "$ctx" >/dev/null
printf 'FROM swarm-examples/hello:1\nENV FAIL_AT_START=1\n' | docker build -q -t swarm-examples/hello:bad - >/dev/null
docker image ls swarm-examples/hello --format '{{.Repository}}:{{.Tag}} {{.Size}}'
