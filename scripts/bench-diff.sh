#!/usr/bin/env bash
# Whole-command comparison of strata-diff's layer apply against plain tools, in one run:
#   strata apply (examples/apply_layer) of the five debian:multi gzip layers  vs  pigz -dc | tar -x
#   strata apply of the five debian-zstd:multi layers                          vs  zstd -dc | tar -x
# each into an empty directory, on the root fs AND on a fresh loop ext4
# (/work/shared/peers/scratch-fs.sh). Prints median wall seconds, ratios and peak RSS.
# Note: tar does not apply whiteouts (it extracts .wh.* files); strata does.
# Every run extracts into a directory of its own and nothing is deleted until all runs on
# a filesystem are done: ext4 makes inode creation up to 10x slower for a minute or more
# after thousands of deletions (its allocator skips recently deleted inodes one by one),
# which would bill each tool for the cleanup of the one before.
#
# usage: scripts/bench-diff.sh [RUNS]      (env: PEERS_DATA, BENCH_DIR, SCRATCH_SIZE)
set -euo pipefail
RUNS=${1:-3}
DATA=${PEERS_DATA:-/tmp/peers-data}
WORK=${BENCH_DIR:-/tmp/strata-bench-diff}
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib.sh"
SCRATCH=/work/shared/peers/scratch-fs.sh

layers() { # layout ref -> blob paths in order
  python3 - "$1" "$2" <<'PY'
import json, sys
base, ref = sys.argv[1], sys.argv[2]
idx = json.load(open(base + "/index.json"))
m = [x for x in idx["manifests"] if x.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref][0]
man = json.load(open(base + "/blobs/sha256/" + m["digest"][7:]))
for l in man["layers"]:
    print(base + "/blobs/sha256/" + l["digest"][7:])
PY
}
mapfile -t GZ < <(layers "$DATA/oci/debian" multi)
mapfile -t ZS < <(layers "$DATA/oci/debian-zstd" multi)

(cd "$HERE" && cargo build --release --example apply_layer -q)
BIN=$HERE/target/release/examples/apply_layer

# one measurement: prints "seconds max_rss_kib"
measure() { # target-dir (new) cmd...
  local dir=$1; shift
  mkdir -p "$dir"; sync
  /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >/dev/null 2>"$WORK/err.out" || { cat "$WORK/err.out" >&2; return 1; }
  cat "$WORK/time.out"
}


run_fs() { # label dir
  local label=$1 dir=$2
  declare -A T R
  local n=0 t
  for i in $(seq "$RUNS"); do
    for k in strata_gz tar_gz strata_zs tar_zs; do
      n=$((n + 1)); t=$dir/t$n
      case $k in
        strata_gz) out=$(measure "$t" "$BIN" "$t" "${GZ[@]}") ;;
        strata_zs) out=$(measure "$t" "$BIN" "$t" "${ZS[@]}") ;;
        tar_gz) out=$(measure "$t" bash -c 'for b in "${@:2}"; do pigz -dc "$b" | tar -x -C "$1"; done' _ "$t" "${GZ[@]}") ;;
        tar_zs) out=$(measure "$t" bash -c 'for b in "${@:2}"; do zstd -dcq "$b" | tar -x -C "$1"; done' _ "$t" "${ZS[@]}") ;;
      esac
      T[$k]+="${out% *}"$'\n'; R[$k]+="${out#* }"$'\n'
    done
  done
  rm -rf "$dir"/t*
  local sg tg sz tz
  sg=$(printf %s "${T[strata_gz]}" | median); tg=$(printf %s "${T[tar_gz]}" | median)
  sz=$(printf %s "${T[strata_zs]}" | median); tz=$(printf %s "${T[tar_zs]}" | median)
  all() { printf %s "${T[$1]}" | tr '\n' ' '; }
  printf '%-9s gzip: strata %6.2fs  pigz|tar %6.2fs  ratio %.2f  strata peak RSS %s KiB  (strata: %s; tar: %s)\n' "$label" "$sg" "$tg" "$(echo "$sg/$tg" | bc -l)" "$(printf %s "${R[strata_gz]}" | sort -n | tail -1)" "$(all strata_gz)" "$(all tar_gz)"
  printf '%-9s zstd: strata %6.2fs  zstd|tar %6.2fs  ratio %.2f  strata peak RSS %s KiB  (strata: %s; tar: %s)\n' "$label" "$sz" "$tz" "$(echo "$sz/$tz" | bc -l)" "$(printf %s "${R[strata_zs]}" | sort -n | tail -1)" "$(all strata_zs)" "$(all tar_zs)"
}

mkdir -p "$WORK"
echo "# $(date -u +%FT%TZ) runs=$RUNS nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
run_fs rootfs "$WORK/root"
"$SCRATCH" mount "$WORK/loop" "${SCRATCH_SIZE:-16G}" >/dev/null
trap '"$SCRATCH" umount "$WORK/loop" >/dev/null 2>&1 || true' EXIT
run_fs loop-ext4 "$WORK/loop"
echo "# done $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
