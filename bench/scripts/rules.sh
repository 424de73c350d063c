#!/usr/bin/env bash
# Issue 6's figures: throughput of a plain link against a geo-targeted and a device-targeted one
# on the same release proxy (wrk, closed loop, alternating rounds), and the latency of one
# password verification. Run on a quiet machine:  bash bench/scripts/rules.sh [rounds] [seconds]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sling-target}"
rounds="${1:-3}"
secs="${2:-5}"
cargo build -q --release -p sling-proxy --bin sling-proxy --example rules_bench
bin="$CARGO_TARGET_DIR/release"
work="$(mktemp -d)"
trap 'kill "$proxy" 2>/dev/null || true; wait "$proxy" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/examples/rules_bench" "$work/snap"
port=$((20000 + RANDOM % 20000))
# Proxy on CPU 1, wrk on CPU 0 (as the harness does); clicks on (the default), no control plane:
# clicks go to the spool, as they would while the control plane is away.
taskset -c 1 "$bin/sling-proxy" --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 \
  --snapshot-dir "$work/snap" --spool-dir "$work/spool" --default-domain localhost \
  >"$work/proxy.log" 2>&1 &
proxy=$!
for _ in $(seq 1 50); do
  grep -q "listening proxy=" "$work/proxy.log" && break
  sleep 0.1
done
ua='Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1'
printf 'round,link,req_per_s\n'
for r in $(seq 1 "$rounds"); do
  for link in plain geo dev; do
    rps=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" -H "User-Agent: $ua" \
      "http://127.0.0.1:$port/$link" | awk '/Requests\/sec/ {print $2}')
    printf '%s,%s,%s\n' "$r" "$link" "$rps"
  done
done
