#!/usr/bin/env bash
# Whole-command comparison, in one run on this machine, of computing a layer from a container
# snapshot (the Comparer):
#   containerd 1.6 `ctr snapshots --snapshotter X diff work`  (walking differ: double walk)
#   strata `snapshot diff work --double-walk`                  (our double walk, forced;
#                                                               gzip level 1, and level 6
#                                                               like Go's default gzip)
#   strata `snapshot diff work`                                (default: on overlay the
#                                                               upperdir fast path)
# on debian:multi plus the 2,000-file change of ../shared/peers/modify-tree.sh, for the
# native and overlay snapshotters, on the root fs and on a fresh loop ext4
# (../shared/peers/scratch-fs.sh), each tool with its root on that filesystem.
#
# Setup (pull, prepare `work`, mount, modify-tree.sh, unmount) is outside the measurement;
# the containerd daemon is restarted after its setup so its peak RSS (VmHWM) covers the
# diffs only. One untimed warm-up run per command, then RUNS interleaved runs. Both tools
# write gzip and stream the blob to a file (ctr to stdout, strata with -o), so the outputs
# are comparable; their size and entry counts are printed. Prints median wall seconds,
# ratio strata/ctr and peak RSS.
#
# usage: scripts/bench-compare.sh [RUNS]
#   env: FS ("root scratch"), SNAPSHOTTERS ("overlay native"), REGISTRY_ADDR, OUT,
#        SCRATCH_SIZE (12G), STRATA_BIN (skip the cargo build and use this binary)
# needs: ../shared/peers/install.sh, registry.sh start, build-images.sh; root
set -euo pipefail
RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib.sh"
PEERS=$(cd "$HERE/../shared/peers" && pwd)
REG=${REGISTRY_ADDR:-127.0.0.1:5000}
IMG=$REG/debian:multi
FS=${FS:-root scratch}
SNAPSHOTTERS=${SNAPSHOTTERS:-overlay native}
OUT=${OUT:-/tmp/strata-bench-compare}
mkdir -p "$OUT"

if [ -z "${STRATA_BIN:-}" ]; then
  (cd "$HERE" && cargo build --release --example strata -q)
  STRATA_BIN=$HERE/target/release/examples/strata
fi

# one timed run: prints "seconds max_rss_kib"; the command's stdout goes to $1
timed() { # stdout-file cmd...
  local so=$1; shift
  sync
  /usr/bin/time -f "%e %M" -o "$OUT/time.out" "$@" >"$so" 2>"$OUT/cmd.err" ||
    { echo "FAILED: $*" >&2; tail -5 "$OUT/cmd.err" >&2; return 1; }
  cat "$OUT/time.out"
}
# "BYTES gzip, N entries, W whiteouts" of a gzip layer
layer_stats() {
  printf '%d bytes gzip, %s' "$(stat -c %s "$1")" \
    "$(gzip -dc "$1" | tar -t | awk '{n++} /(^|\/)\.wh\./ {w++} END {printf "%d entries, %d whiteouts", n, w}')"
}

# containerd: ctd_start / ctd_kill are in lib.sh
ctd_clean() { # base
  ctd_kill
  unmount_under "$1"
  rm -rf "$1"
}
strata_clean() { # root
  unmount_under "$1"
  rm -rf "$1"
}
SCRATCH_MNT=
cleanup() {
  ctd_kill
  if [ -n "$SCRATCH_MNT" ]; then
    unmount_under "$SCRATCH_MNT"
    bash "$PEERS/scratch-fs.sh" umount "$SCRATCH_MNT" >/dev/null 2>&1 || true
  fi
  unmount_under "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_fs() { # label dir
  local label=$1 dir=$2 sn
  for sn in $SNAPSHOTTERS; do
    local ctdsn ctd=$dir/ctd sroot=$dir/strata
    ctdsn=$([ "$sn" = overlay ] && echo overlayfs || echo native)
    local CTR=(ctr -a "$ctd/c.sock" -n bench)
    local S=("$STRATA_BIN" --root "$sroot" --snapshotter "$sn")
    ctd_clean "$ctd"
    strata_clean "$sroot"

    # containerd setup: pull, prepare work on the image's chain, change it.
    ctd_start "$ctd"
    local chain
    chain=$("${CTR[@]}" images pull --plain-http --snapshotter "$ctdsn" --print-chainid "$IMG" |
      awk '/image chain ID/ {print $NF}')
    "${CTR[@]}" snapshots --snapshotter "$ctdsn" prepare work "$chain" >/dev/null
    mkdir -p "$ctd/mnt"
    # `ctr snapshots mounts` prints the mount(8) command line
    eval "$("${CTR[@]}" snapshots --snapshotter "$ctdsn" mounts "$ctd/mnt" work)"
    bash "$PEERS/modify-tree.sh" "$ctd/mnt" >/dev/null
    umount "$ctd/mnt"
    ctd_kill
    ctd_start "$ctd"

    # strata setup: the same.
    "${S[@]}" image pull --plain-http "$IMG" >/dev/null 2>&1
    "${S[@]}" snapshot prepare work --from-image "$IMG" >/dev/null
    mkdir -p "$dir/smnt"
    "${S[@]}" snapshot mount work "$dir/smnt"
    bash "$PEERS/modify-tree.sh" "$dir/smnt" >/dev/null
    umount "$dir/smnt"

    local kinds=(ctr walk walk6)
    [ "$sn" = overlay ] && kinds+=(fast)
    local k out
    declare -A T=() R=()
    for i in $(seq 0 "$RUNS"); do # run 0: warm-up, not counted
      for k in "${kinds[@]}"; do
        case $k in
          ctr) out=$(timed "$OUT/ctr.layer" "${CTR[@]}" snapshots --snapshotter "$ctdsn" diff work) ;;
          walk) out=$(timed "$OUT/walk.json" "${S[@]}" snapshot diff work --double-walk -o "$OUT/walk.layer") ;;
          walk6) out=$(timed "$OUT/walk6.json" "${S[@]}" snapshot diff work --double-walk --level 6 -o "$OUT/walk6.layer") ;;
          fast) out=$(timed "$OUT/fast.json" "${S[@]}" snapshot diff work -o "$OUT/fast.layer") ;;
        esac
        [ "$i" = 0 ] && continue
        T[$k]+="${out% *}"$'\n'; R[$k]+="${out#* }"$'\n'
      done
    done
    local hwm mc
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$CTD_PID/status")
    mc=$(printf %s "${T[ctr]}" | median)
    gzip -dc "$OUT/ctr.layer" | tar -t | sort >"$OUT/ctr.names"
    printf '%-7s %-7s %-34s %6.2fs             client %3d MiB, daemon peak %3d MiB  %s\n' \
      "$label" "$sn" "ctr snapshots diff (Go gzip 6)" "$mc" "$(( $(printf %s "${R[ctr]}" | sort -g | tail -1) / 1024 ))" \
      "$((hwm / 1024))" "$(layer_stats "$OUT/ctr.layer")" | tee -a "$OUT/summary"
    for k in "${kinds[@]:1}"; do
      local m what same
      m=$(printf %s "${T[$k]}" | median)
      case $k in
        walk) what="strata diff --double-walk (gzip 1)" ;;
        walk6) what="strata diff --double-walk --level 6" ;;
        fast) what="strata diff (fast path, gzip 1)" ;;
      esac
      same=$(cmp -s "$OUT/ctr.names" <(gzip -dc "$OUT/$k.layer" | tar -t | sort) && echo "same names as ctr" || echo "NAMES DIFFER from ctr")
      printf '%-7s %-7s %-34s %6.2fs ratio %.2f  peak RSS %3d MiB                    %s, %s\n' \
        "$label" "$sn" "$what" "$m" "$(echo "$m / $mc" | bc -l)" "$(( $(printf %s "${R[$k]}" | sort -g | tail -1) / 1024 ))" \
        "$(layer_stats "$OUT/$k.layer")" "$same" | tee -a "$OUT/summary"
    done
    local runs=""
    for k in "${kinds[@]}"; do runs+="$k: ${T[$k]//$'\n'/ } "; done
    echo "        runs (s): $runs" | tee -a "$OUT/summary"
    ctd_clean "$ctd"
    strata_clean "$sroot"
  done
}

echo "# $(date -u +%FT%TZ) strata bench-compare, $RUNS runs, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary"
for fs in $FS; do
  case $fs in
    root) run_fs root "$OUT/rootfs" ;;
    scratch)
      bash "$PEERS/scratch-fs.sh" mount "$OUT/scratch" "${SCRATCH_SIZE:-12G}" >/dev/null
      SCRATCH_MNT=$OUT/scratch
      run_fs scratch "$OUT/scratch"
      bash "$PEERS/scratch-fs.sh" umount "$OUT/scratch" >/dev/null
      SCRATCH_MNT= ;;
  esac
done
echo "# done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary"
