#!/usr/bin/env bash
# Compares `strata content ingest` of a 1 GiB file with `sha256sum FILE && cp FILE DIR`
# (both warm cache, same filesystem), prints both times, the speed ratio
# (baseline time / strata time: >= 0.9 is the target) and strata's peak RSS.
#
# Usage: scripts/bench-content.sh [SIZE_MIB]   (default 1024)
# Env:   BENCH_DIR  where the file, the store and the cp target go (default /tmp/strata-bench-content)
#        RUNS       hyperfine runs per command (default 5)
#        STRATA     a prebuilt strata binary (default: cargo build --release --example strata)
set -euo pipefail

size_mib=${1:-1024}
bench_dir=${BENCH_DIR:-/tmp/strata-bench-content}
runs=${RUNS:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)

if [[ -z "${STRATA:-}" ]]; then
    (cd "$repo" && cargo build --quiet --release --example strata)
    STRATA="$repo/target/release/examples/strata"
fi

mkdir -p "$bench_dir"
file="$bench_dir/blob-${size_mib}m"
root="$bench_dir/store"
dst="$bench_dir/cp-target"
if [[ ! -f "$file" || $(stat -c %s "$file") -ne $((size_mib << 20)) ]]; then
    head -c $((size_mib << 20)) /dev/urandom >"$file"
fi
cat "$file" >/dev/null # warm the page cache

echo "machine: $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg), fs: $(df -T "$bench_dir" | awk 'NR==2{print $2}')"
echo "file: $file (${size_mib} MiB)"

strata_cmd="$STRATA --root $root content ingest bench < $file"
base_cmd="sha256sum $file >/dev/null && cp $file $dst/"
# sync: each command starts without the previous one's dirty pages still being written back.
prepare="rm -rf $root $dst && mkdir -p $dst && sync && cat $file >/dev/null"

if command -v hyperfine >/dev/null; then
    json="$bench_dir/hyperfine.json"
    hyperfine --style basic --warmup 1 --runs "$runs" --prepare "$prepare" \
        --export-json "$json" -n strata "$strata_cmd" -n "sha256sum+cp" "$base_cmd"
    read -r t_strata t_base < <(jq -r '[.results[0].median, .results[1].median] | @tsv' "$json")
else
    echo "hyperfine not found: one timed run each"
    eval "$prepare"
    s=$(date +%s.%N); eval "$strata_cmd" >/dev/null; e=$(date +%s.%N)
    t_strata=$(echo "$e - $s" | bc)
    eval "$prepare"
    s=$(date +%s.%N); eval "$base_cmd"; e=$(date +%s.%N)
    t_base=$(echo "$e - $s" | bc)
fi

eval "$prepare"
rss_kb=$( { /usr/bin/time -f '%M' sh -c "$strata_cmd" >/dev/null; } 2>&1 | tail -1)
rm -rf "$root" "$dst"

awk -v s="$t_strata" -v b="$t_base" -v r="$rss_kb" -v m="$size_mib" 'BEGIN {
    printf "strata content ingest: %.3f s (%.0f MiB/s)\n", s, m / s
    printf "sha256sum + cp:        %.3f s (%.0f MiB/s)\n", b, m / b
    printf "speed ratio (baseline time / strata time): %.2fx  (target >= 0.90)\n", b / s
    printf "strata peak RSS: %.1f MiB  (target < 64)\n", r / 1024
}'
