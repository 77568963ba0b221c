#!/usr/bin/env bash
# Runs every test Silt has, installing what the tests need first:
#   - Debian packages: kcat, librdkafka-dev + pkg-config (the rdkafka crate links the system
#     librdkafka), a JDK and Maven for the Java client, protobuf-compiler (etcd-client
#     compiles etcd's .proto files) and etcd-server (the cluster tests start it on free
#     loopback ports) and openssl (the TLS tests read the broker's certificate with s_client)
#     (each skipped when already present);
#   - kafka-clients jars from Maven Central (tests/java/build.sh);
#   - confluent-kafka (a current librdkafka, next to Debian's 2.0.2) and kafka-python (an
#     independent implementation) from PyPI, and moto, the S3-compatible server the
#     object-storage tests start on a free loopback port.
# Then: cargo fmt --check, cargo clippy -D warnings, unit tests, end-to-end tests, and the
# deployment artifacts (scripts/check-deploy.sh: the image's binary, the Helm chart, the compose
# file and the Terraform, with Helm, kubernetes-validate, hclfmt and checkov).
# Bounded: every step either finishes or fails; nothing waits on input.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip --user installs land here.
export PATH="$HOME/.local/bin:$PATH"
# No incremental caches: this is one full run, and they would add gigabytes to target/ (a CI disk
# ran out of space with them).
export CARGO_INCREMENTAL=0

say() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to install: $*" >&2; return 1; fi
}

need_pkgs=()
command -v kcat >/dev/null || need_pkgs+=(kcat)
pkg-config --exists rdkafka 2>/dev/null || need_pkgs+=(librdkafka-dev pkg-config)
command -v javac >/dev/null || need_pkgs+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_pkgs+=(maven)
command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if ! command -v moto_server >/dev/null 2>&1; then
  # The S3-compatible server the object-storage tests run against: it installs from PyPI
  # and supports ranged GETs, multipart uploads and conditional PUTs.
  say "installing moto (S3-compatible test server)"
  python3 -m pip --version >/dev/null 2>&1 || as_root apt-get install -y -qq python3-pip >/dev/null
  python3 -m pip install --quiet 'moto[server]' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'moto[server]'
  hash -r
fi
if ! python3 -c 'import confluent_kafka, kafka' 2>/dev/null; then
  say "installing confluent-kafka and kafka-python"
  python3 -m pip --version >/dev/null 2>&1 || as_root apt-get install -y -qq python3-pip >/dev/null
  python3 -m pip install --quiet confluent-kafka kafka-python 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages confluent-kafka kafka-python
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

say "Java test client"
bash tests/java/build.sh

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

say "fuzz (request decoding, batch validation), 30 s per target"
bash scripts/fuzz.sh 30

say "build silt"
cargo build -p silt-broker --bin silt
export SILT_BIN="$PWD/target/debug/silt"

say "tests"
# Two end-to-end tests at a time: each starts its own broker and clients on a 2-core machine.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast -- --test-threads 2 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the last often empty).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"

say "deployment artifacts (image binary, Helm chart, compose file, Terraform)"
deploy=0
bash scripts/check-deploy.sh || deploy=$?
[ "$deploy" = 0 ] && echo "deployment checks passed" || echo "deployment checks FAILED"
[ "$status" = 0 ] && status=$deploy
exit "$status"
