#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds each (default 600), one after another, and
# prints one line per target: executions, new coverage, crashes. Crashes land in
# crates/*/fuzz/artifacts/<target>/; add each as a regression test before fixing it.
#
# usage: scripts/fuzz.sh [TARGET...]      env: SECS (600), JOBS (1), OUT (/tmp/strata-fuzz)
# needs: cargo install cargo-fuzz (runs on stable with RUSTC_BOOTSTRAP=1)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-600}
JOBS=${JOBS:-1}
OUT=${OUT:-/tmp/strata-fuzz}
mkdir -p "$OUT"
declare -A DIR=(
  [apply]=crates/diff/fuzz [tar_pax]=crates/diff/fuzz
  [reference]=crates/image/fuzz [www_authenticate]=crates/image/fuzz
  [documents]=crates/image/fuzz [docker_config]=crates/image/fuzz
  [filter]=crates/image/fuzz [hosts_toml]=crates/image/fuzz
)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(apply tar_pax reference www_authenticate documents docker_config filter hosts_toml)
export RUSTC_BOOTSTRAP=1
# The layer targets create and delete a tree per run: on tmpfs that costs ~10x less than on
# this root ext4.
export TMPDIR=${TMPDIR:-/dev/shm}
for t in "${targets[@]}"; do
  d=${DIR[$t]}
  corpus=$d/corpus/$t
  mkdir -p "$corpus"
  [ -d "$d/seeds/$t" ] && cp -n "$d/seeds/$t"/* "$corpus"/ 2>/dev/null || true
  log=$OUT/$t.log
  start=$(date +%s)
  set +e
  par=()
  [ "$JOBS" -gt 1 ] && par=(-jobs="$JOBS" -workers="$JOBS")
  cargo fuzz run --fuzz-dir "$d" "$t" "$corpus" -- -max_total_time="$SECS" \
    -print_final_stats=1 -rss_limit_mb=4096 "${par[@]}" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(cat "$log" "$d"/fuzz-*.log 2>/dev/null | awk '/stat::number_of_executed_units/ {s+=$2} END {print s+0}' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  crashes=$(find "$d/artifacts/$t" -type f 2>/dev/null | wc -l)
  echo "$(date -u +%FT%TZ) $t: rc=$rc ${SECS}s execs=$execs cov=${cov:-?} artifacts=$crashes wall=$(( $(date +%s) - start ))s" | tee -a "$OUT/summary"
done
