#!/usr/bin/env bash
# containerd 1.6 pulling through strata as its proxy snapshotter vs through its own overlayfs
# snapshotter, in one run on this machine: `ctr images pull --snapshotter strata` (a fresh
# `strata serve --snapshotter overlay` and a fresh private daemon per run) vs `ctr images pull
# --snapshotter overlayfs` (a fresh daemon per run), interleaved, on the root fs and on a fresh
# loop ext4 (../shared/peers/scratch-fs.sh). containerd downloads and applies the layers in both
# cases; only the snapshotter differs. Nothing is deleted while a group is timed (see
# bench-pull.sh for why). Prints median wall seconds, every sample and the ratio strata/overlayfs.
#
# usage: scripts/bench-proxy.sh [RUNS]   env: IMAGES ("debian:minbase debian:multi"),
#        FS ("root scratch"; also tmpfs), SETTLE (seconds of rest after a group's cleanup on root; 60),
#        REGISTRY_ADDR, OUT
# needs: ../shared/peers/install.sh, registry.sh start, build-images.sh
set -euo pipefail
RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib.sh"
REG=${REGISTRY_ADDR:-127.0.0.1:5000}
IMAGES=${IMAGES:-debian:minbase debian:multi}
FS=${FS:-root scratch}
SETTLE=${SETTLE:-60}
OUT=${OUT:-/tmp/strata-bench-proxy}
mkdir -p "$OUT"

(cd "$HERE" && cargo build --release --example strata -q)
STRATA=$HERE/target/release/examples/strata

SERVE_PID=
serve_start() { # root sock
  "$STRATA" --root "$1" --snapshotter overlay serve --address "$2" 2>>"$OUT/serve.log" &
  SERVE_PID=$!
  for _ in $(seq 200); do
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$2" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "strata serve did not start" >&2; return 1
}
serve_stop() {
  if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
  SERVE_PID=
}
trap 'ctd_kill; serve_stop' EXIT

run_fs() { # label dir
  local label=$1 g=$2/group
  for img in $IMAGES; do
    local s=() o=() i b out
    fs_start "$label" "$g"
    for i in $(seq "$RUNS"); do
      b=$g/proxy-$i
      mkdir -p "$b"
      serve_start "$b/strata" "$b/strata.sock"
      ctd_start "$b/ctd" "[proxy_plugins]
  [proxy_plugins.strata]
    type = \"snapshot\"
    address = \"$b/strata.sock\""
      out=$(timed ctr -a "$b/ctd/c.sock" -n bench images pull --plain-http --snapshotter strata "$REG/$img"); s+=("${out% *}")
      ctd_kill; serve_stop; unmount_under "$b"
      b=$g/overlayfs-$i
      ctd_start "$b/ctd"
      out=$(timed ctr -a "$b/ctd/c.sock" -n bench images pull --plain-http --snapshotter overlayfs "$REG/$img"); o+=("${out% *}")
      ctd_kill; unmount_under "$b"
    done
    fs_end "$label" "$g"
    local ms mo
    ms=$(printf '%s\n' "${s[@]}" | median); mo=$(printf '%s\n' "${o[@]}" | median)
    printf '%-7s %-18s ctr pull --snapshotter strata %6.2fs  overlayfs %6.2fs  ratio %.2f  (strata: %s; overlayfs: %s)\n' \
      "$label" "$img" "$ms" "$mo" "$(echo "$ms / $mo" | bc -l)" "${s[*]}" "${o[*]}" | tee -a "$OUT/summary"
  done
}

echo "# $(date -u +%FT%TZ) strata bench-proxy, $RUNS runs, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary"
for fs in $FS; do
  run_fs "$fs" "$OUT/$fs"
done
