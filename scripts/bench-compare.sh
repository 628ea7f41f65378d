#!/usr/bin/env bash
# Compares two builds of the benchmark program on this machine, as
# WORKLOADS.md asks: each run of one build is followed at once by a run of
# the other, RUNS times (default 3) per workload × backend, and the median of
# every numeric figure is printed per build.
#
#   scripts/bench-compare.sh OLD_BENCH NEW_BENCH [workload ...]
#
# OLD_BENCH and NEW_BENCH are release builds of `examples/bench` (for
# instance the one of another checkout: `git worktree add ../old <commit>`
# and `cargo build --release --example bench` there). Workloads default to
# w1 w2 w3 w4; BACKENDS (default "memory pg-redis") and BENCH_ARGS apply to
# both. Raw lines, with a "build" field, go to target/bench/compare-<time>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 OLD_BENCH NEW_BENCH [workload ...]" >&2; exit 2; }
old="$1"; new="$2"; shift 2
RUNS="${RUNS:-3}"
BACKENDS="${BACKENDS:-memory pg-redis}"
workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(w1 w2 w3 w4)
case " $BACKENDS " in *" pg-redis "*) bash scripts/services.sh postgres redis ;; esac
mkdir -p target/bench
out="target/bench/compare-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
ulimit -n 20000 2>/dev/null || true
for w in "${workloads[@]}"; do
  for b in $BACKENDS; do
    for r in $(seq "$RUNS"); do
      for build in old new; do
        bin="$old"; [ "$build" = new ] && bin="$new"
        echo "== $w $b run $r ($build)" >&2
        "$bin" "$w" --backend "$b" ${BENCH_ARGS:-} | grep '^{' \
          | python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); d["build"] = sys.argv[1]; print(json.dumps(d))' "$build" \
          | tee -a "$out"
      done
    done
  done
done
echo "raw results: $out" >&2
python3 scripts/bench-medians.py "$out"
