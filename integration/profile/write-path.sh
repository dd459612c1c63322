#!/bin/bash
# Profiles the write path (issue 16): one `raftctl bench throughput` phase
# at 256 Sets in flight per client, with `perf record` sampling only the
# benchmark's own processes (nodes, gateway, bench workers) for 10 s in the
# middle of the phase, and the node's sled flush counters scraped around
# it. Then prints the CPU split per process and per category
# (perf-summary.py). Not part of CI: run it by hand on a quiet machine.
#
#   integration/profile/write-path.sh [RAFTCTL] [OUTDIR] [extra bench args]
#
# RAFTCTL defaults to target/release/raftctl (the node and gateway
# binaries must sit beside it); OUTDIR to a new temp dir. Needs `perf`
# (Debian: linux-perf) and root or perf_event_paranoid <= 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
raftctl=$(realpath "${1:-$here/../../target/release/raftctl}")
out=${2:-$(mktemp -d -t checkraft-profile-XXXXXX)}
shift $(( $# > 2 ? 2 : $# ))
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
mkdir -p "$out"
"$raftctl" bench throughput --sweep 256 --duration 25 --no-redis --out "$out" "$@" \
    > "$out/bench.log" 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do grep -q "^phase:" "$out/bench.log" && break; sleep 1; done
sleep 8
bin=$(dirname "$raftctl")
pids=$(pgrep -f "$bin/checkraft-|bench-worker" | paste -sd, -)
ps -o pid,args -p "$pids" | cut -c1-160 > "$out/pids.txt"
node=$(grep -o "checkraft-node --id 1 --listen [0-9.:]*" "$out/pids.txt" | awk '{print $5}')
curl -s "http://$node/metrics" > "$out/node-metrics-before.txt" || true
perf record -F 499 -p "$pids" -o "$out/perf.data" -- sleep 10 > /dev/null 2>&1
curl -s "http://$node/metrics" > "$out/node-metrics-after.txt" || true
wait $bench
trap - EXIT
grep -E "acknowledged sets/s \||CPU cores" "$out/bench.log" || true
python3 "$here/perf-summary.py" "$out"
