#!/usr/bin/env bash
# Smoke test of a built silt binary, as the container runs it: `silt serve` on embedded
# defaults with the image's environment (listening on every interface), `silt health` as the
# image's HEALTHCHECK calls it, a kcat round trip, then SIGTERM and a clean exit within the
# shutdown deadline.
#   scripts/smoke-binary.sh PATH/TO/silt
set -euo pipefail
silt="$(realpath "${1:?usage: smoke-binary.sh SILT_BINARY}")"
command -v kcat >/dev/null || { echo "kcat is needed (apt-get install kcat)" >&2; exit 1; }
dir="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
read -r kafka admin < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

cd "$dir"
SILT_DATA_DIR="$dir/data" SILT_LISTEN="0.0.0.0:$kafka" SILT_ADVERTISED_LISTENER="127.0.0.1:$kafka" \
  SILT_ADMIN_LISTEN="0.0.0.0:$admin" SILT_SHUTDOWN_TIMEOUT_MS=10000 \
  "$silt" serve >"$dir/silt.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  "$silt" health --admin "127.0.0.1:$admin" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/silt.log"; echo "silt exited during start" >&2; exit 1; }
  sleep 0.1
done
"$silt" health --admin "127.0.0.1:$admin"
"$silt" health --live --admin "127.0.0.1:$admin"

printf 'a:1\nb:2\nc:3\n' | kcat -b "127.0.0.1:$kafka" -t smoke -P -K: -X acks=all
got="$(kcat -b "127.0.0.1:$kafka" -t smoke -C -e -q -f '%k=%s\n' -o beginning)"
[ "$got" = "$(printf 'a=1\nb=2\nc=3')" ] || { echo "read back: $got" >&2; cat "$dir/silt.log"; exit 1; }
echo "kcat round trip: 3 records produced and read back"

start=$(date +%s)
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" = 0 ] || { cat "$dir/silt.log"; echo "silt exited with $status on SIGTERM" >&2; exit 1; }
grep -q "silt broker stopped" "$dir/silt.log" || { cat "$dir/silt.log"; exit 1; }
echo "SIGTERM: clean exit in $(( $(date +%s) - start )) s"
