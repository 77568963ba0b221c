#!/bin/sh
# Builds the release `silt` binary exactly as the container image does: the Dockerfile's build
# stage runs this script, and so does CI (scripts/check-deploy.sh), so a change that breaks the
# image build breaks CI too, without a Docker engine.
#   deploy/build.sh OUT    builds and copies the binary to OUT
# Needs only cargo (etcd-client's generated protobuf code is vendored: no protoc). The copy
# keeps symbols (backtraces name functions) but not the line tables: 28 MB instead of 140.
set -eu
cd "$(dirname "$0")/.."
out="${1:?usage: deploy/build.sh OUT}"
cargo build --release --locked -p silt-broker --bin silt
mkdir -p "$(dirname "$out")"
cp target/release/silt "$out"
strip --strip-debug "$out"
