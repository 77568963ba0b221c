#!/usr/bin/env bash
# Runs each cargo-fuzz target briefly over the committed corpus (fuzz/corpus/<target>).
# A crash fails the run and leaves the input in fuzz/artifacts/. Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-30}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
# libFuzzer needs nightly flags: use a nightly toolchain if there is one, else unlock stable's.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
for target in request batch; do
  # A scratch copy: the run adds inputs, the committed corpus only changes on purpose.
  work="$(mktemp -d)"
  cp -r "corpus/$target/." "$work/"
  log="$work.log"
  status=0
  "${fuzz[@]}" run -s none "$target" "$work" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(Done|==|SUMMARY|thread .* panicked)' "$log" | sed "s/^/$target: /" || true
  if [ "$status" != 0 ]; then tail -40 "$log" >&2; fi
  rm -rf "$work" "$log"
  if [ "$status" != 0 ]; then
    echo "fuzz target $target failed (exit $status); see fuzz/artifacts/$target" >&2
    exit 1
  fi
done
