#!/usr/bin/env bash
# Runs the benchmark workloads of WORKLOADS.md, each workload × backend
# RUNS times (default 3), in a release build, and prints the median of every
# numeric figure. The raw JSON lines go to target/bench/results-<time>.jsonl.
#
#   scripts/bench.sh                 # w1 w2 w3 w4 on memory and pg-redis
#   scripts/bench.sh w1 w2           # some workloads
#   scripts/bench.sh w6              # fairness: a report with fair queues off, one on
#   RUNS=1 BACKENDS=pg-redis scripts/bench.sh w7   # soak: 500 000 jobs with retention on (~20 min)
#   RUNS=5 BACKENDS=memory scripts/bench.sh w1
#   BACKENDS=sqlite scripts/bench.sh w1 w2   # a SQLite file in a temporary directory
#
# pg-redis needs PostgreSQL and Redis (scripts/services.sh starts them);
# DATABASE_URL and REDIS_URL name them (defaults: the local ones).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
BACKENDS="${BACKENDS:-memory pg-redis}"
workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(w1 w2 w3 w4)
case " $BACKENDS " in *" pg-redis "*) bash scripts/services.sh postgres redis ;; esac
cargo build --release --example bench
bench="${CARGO_TARGET_DIR:-target}/release/examples/bench"
mkdir -p target/bench
out="target/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
# W3 opens about 2 000 sockets in one process.
ulimit -n 20000 2>/dev/null || true
for w in "${workloads[@]}"; do
  for b in $BACKENDS; do
    for r in $(seq "$RUNS"); do
      echo "== $w $b run $r" >&2
      "$bench" "$w" --backend "$b" ${BENCH_ARGS:-} | grep '^{' | tee -a "$out"
    done
  done
done
echo "raw results: $out" >&2
python3 scripts/bench-medians.py "$out"
