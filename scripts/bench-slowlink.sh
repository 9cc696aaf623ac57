#!/usr/bin/env bash
# Pull over a slow link: strata vs containerd 1.6 (`ctr images pull --snapshotter
# overlayfs`) through scripts/slow-link.py, a loopback forwarder that serves each TCP
# connection at RATE bytes/s (default 20 MB/s, as CDNs limit each connection), on a fresh
# tmpfs so the link is what is measured. Interleaved; each run from the same state
# (steady_start); min/median/max, the ratio of medians, and a markdown row in
# $OUT/table.md. strata fetches a blob over 64 MiB as parallel ranges
# (RegistryOptions::parallel_download); containerd 1.6 uses one connection per blob.
#
# usage: scripts/bench-slowlink.sh [RUNS]   env: IMAGES ("debian:multi"), RATE (20000000),
#        FS (tmpfs), REGISTRY_ADDR, OUT
# needs: ../shared/peers/install.sh, registry.sh start, build-images.sh; python3
set -euo pipefail
RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib.sh"
REG=${REGISTRY_ADDR:-127.0.0.1:5000}
IMAGES=${IMAGES:-debian:multi}
RATE=${RATE:-20000000}
FS=${FS:-tmpfs}
OUT=${OUT:-/tmp/strata-bench-slowlink}
PORT=${PORT:-5080}
mkdir -p "$OUT"

(cd "$HERE" && cargo build --release --example strata -q)
STRATA=$HERE/target/release/examples/strata

python3 "$HERE/scripts/slow-link.py" "$PORT" "$REG" "$RATE" &
LINK_PID=$!
trap 'ctd_kill; kill $LINK_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

echo "# $(date -u +%FT%TZ) strata bench-slowlink, $RUNS runs, $RATE B/s per connection" | tee -a "$OUT/summary"
for fs in $FS; do
  for img in $IMAGES; do
    ref=127.0.0.1:$PORT/$img g=$OUT/$fs s=() c=()
    fs_start "$fs" "$g"
    for i in $(seq "$RUNS"); do
      steady_start "$STRATA"
      out=$(timed "$STRATA" --root "$g/strata-$i" image pull --plain-http "$ref"); s+=("${out% *}")
      unmount_under "$g/strata-$i"; rm -rf "$g/strata-$i"
      steady_start
      ctd_start "$g/ctd-$i"
      out=$(timed ctr -a "$g/ctd-$i/c.sock" -n bench images pull --plain-http --snapshotter overlayfs "$ref"); c+=("${out% *}")
      ctd_kill; unmount_under "$g/ctd-$i"; rm -rf "$g/ctd-$i"
    done
    fs_end "$fs" "$g"
    sp=$(printf '%s\n' "${s[@]}" | spread); cp=$(printf '%s\n' "${c[@]}" | spread)
    ratio=$(printf '%.2f' "$(echo "$(cut -d' ' -f2 <<<"$sp") / $(cut -d' ' -f2 <<<"$cp")" | bc -l)")
    echo "$fs $img via $RATE B/s per connection: strata $sp  ctr $cp  ratio $ratio  (strata: ${s[*]}; ctr: ${c[*]})" | tee -a "$OUT/summary"
    echo "| $fs, $((RATE / 1000000)) MB/s per connection | $img | overlay | $sp | $cp | **${ratio}×** | - | - | - |" >>"$OUT/table.md"
  done
done
