#!/usr/bin/env bash
# Whole-command comparison, in one run on this machine, of pulling the ../shared/peers Debian
# images from the loopback registry:
#   strata image pull (overlay, native)  vs  containerd 1.6 `ctr images pull --snapshotter
#   overlayfs|native` (a fresh private daemon per run)  and  `umoci unpack` of the same image
#   (from an OCI layout, so it is unpack only)
# on the root fs and on a fresh loop ext4 (../shared/peers/scratch-fs.sh), with containerd's
# root on the same filesystem as ours. Then the commit of the 2,000-file change of
# ../shared/peers/modify-tree.sh on debian:multi (gzip), timed end to end.
# Prints median wall seconds, ratios strata/containerd and peak RSS.
#
# usage: scripts/bench-pull.sh [RUNS]   env: IMAGES ("debian:minbase debian:multi
#        debian-zstd:multi"), FS ("root scratch"), SNAPSHOTTERS ("overlay native"),
#        EXTRAS (1: also umoci unpack and the commit), REGISTRY_ADDR, PEERS_DATA
# needs: ../shared/peers/install.sh, registry.sh start, build-images.sh
set -euo pipefail
RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PEERS=$(cd "$HERE/../shared/peers" && pwd)
REG=${REGISTRY_ADDR:-127.0.0.1:5000}
DATA=${PEERS_DATA:-/tmp/peers-data}
IMAGES=${IMAGES:-debian:minbase debian:multi debian-zstd:multi}
FS=${FS:-root scratch}
SNAPSHOTTERS=${SNAPSHOTTERS:-overlay native}
EXTRAS=${EXTRAS:-1}
OUT=${OUT:-/tmp/strata-bench-pull}
mkdir -p "$OUT"

(cd "$HERE" && cargo build --release --example strata -q)
STRATA=$HERE/target/release/examples/strata

# one timed run: prints "seconds max_rss_kib"
timed() {
  sync
  /usr/bin/time -f "%e %M" -o "$OUT/time.out" "$@" >"$OUT/cmd.out" 2>"$OUT/cmd.err" ||
    { echo "FAILED: $*" >&2; tail -5 "$OUT/cmd.err" >&2; return 1; }
  cat "$OUT/time.out"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# --- containerd: a fresh daemon per run, root under $1 ---------------------------------
CTD_PID=
ctd_start() { # base
  local base=$1
  mkdir -p "$base"
  cat >"$base/config.toml" <<EOF
version = 2
root = "$base/root"
state = "$base/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$base/c.sock"
[ttrpc]
  address = "$base/c.sock.ttrpc"
EOF
  containerd --config "$base/config.toml" >"$base/log" 2>&1 &
  CTD_PID=$!
  for _ in $(seq 100); do ctr -a "$base/c.sock" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "containerd did not start" >&2
  return 1
}
ctd_stop() { # base
  [ -n "$CTD_PID" ] && kill "$CTD_PID" 2>/dev/null && wait "$CTD_PID" 2>/dev/null || true
  CTD_PID=
  findmnt -rn -o TARGET | grep "^$1/" | sort -r | while read -r m; do umount "$m" || umount -l "$m"; done || true
  rm -rf "$1"
}
strata_clean() { # root
  findmnt -rn -o TARGET | grep "^$1/" | sort -r | while read -r m; do umount "$m" || umount -l "$m"; done || true
  rm -rf "$1"
}

run_fs() { # label dir
  local label=$1 dir=$2
  for img in $IMAGES; do
    local ref="$REG/$img" sn ctdsn
    for sn in $SNAPSHOTTERS; do
      ctdsn=$([ $sn = overlay ] && echo overlayfs || echo native)
      local s=() c=() rs=() i out
      for i in $(seq "$RUNS"); do
        strata_clean "$dir/strata"
        out=$(timed "$STRATA" --root "$dir/strata" --snapshotter $sn image pull --plain-http "$ref")
        s+=("${out% *}"); rs+=("${out#* }")
        strata_clean "$dir/strata"
        ctd_start "$dir/ctd"
        out=$(timed ctr -a "$dir/ctd/c.sock" -n bench images pull --plain-http --snapshotter "$ctdsn" "$ref")
        c+=("${out% *}")
        ctd_stop "$dir/ctd"
      done
      local ms mc mr
      ms=$(printf '%s\n' "${s[@]}" | median); mc=$(printf '%s\n' "${c[@]}" | median)
      mr=$(printf '%s\n' "${rs[@]}" | sort -g | tail -1)
      printf '%-7s %-20s %-8s strata %6.2fs  ctr %6.2fs  ratio %.2f  strata peak RSS %d MiB\n' \
        "$label" "$img" "$sn" "$ms" "$mc" "$(echo "$ms / $mc" | bc -l)" "$((mr / 1024))" | tee -a "$OUT/summary"
    done
    # umoci unpack of the same image (from the OCI layout built by build-images.sh)
    local layout tag u=() out
    case $img in
      debian-zstd:*) layout=$DATA/oci/debian-zstd ;;
      *) layout=$DATA/oci/debian ;;
    esac
    tag=${img#*:}
    if [ "$EXTRAS" = 1 ] && command -v umoci >/dev/null && [ -d "$layout" ] && [ "${img%%:*}" = debian ]; then
      for i in $(seq "$RUNS"); do
        rm -rf "$dir/umoci"
        out=$(timed umoci unpack --image "$layout:$tag" "$dir/umoci")
        u+=("${out% *}")
      done
      rm -rf "$dir/umoci"
      printf '%-7s %-20s umoci unpack %6.2fs (unpack only, no download)\n' "$label" "$img" \
        "$(printf '%s\n' "${u[@]}" | median)" | tee -a "$OUT/summary"
    fi
  done
  # commit: the 2,000-file change on debian:multi, gzip, overlay
  if [ "$EXTRAS" = 1 ] && [[ " $IMAGES " == *" debian:multi "* ]]; then
    local cm=() out
    for i in $(seq "$RUNS"); do
      strata_clean "$dir/strata"
      "$STRATA" --root "$dir/strata" --snapshotter overlay image pull --plain-http "$REG/debian:multi" >/dev/null 2>&1
      "$STRATA" --root "$dir/strata" --snapshotter overlay snapshot prepare ctr --from-image "$REG/debian:multi" >/dev/null
      mkdir -p "$dir/mnt"
      "$STRATA" --root "$dir/strata" --snapshotter overlay snapshot mount ctr "$dir/mnt"
      bash "$PEERS/modify-tree.sh" "$dir/mnt" >/dev/null
      umount "$dir/mnt"
      out=$(timed "$STRATA" --root "$dir/strata" --snapshotter overlay image commit ctr bench/committed:1)
      cm+=("${out% *}")
    done
    strata_clean "$dir/strata"
    printf '%-7s debian:multi commit of the modify-tree.sh change (gzip, overlay): %.2fs\n' "$label" \
      "$(printf '%s\n' "${cm[@]}" | median)" | tee -a "$OUT/summary"
  fi
}

echo "# $(date -u +%FT%TZ) strata bench-pull, $RUNS runs, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary"
for fs in $FS; do
  case $fs in
    root) run_fs root "$OUT/rootfs" ;;
    scratch)
      bash "$PEERS/scratch-fs.sh" mount "$OUT/scratch" 24G >/dev/null
      run_fs scratch "$OUT/scratch"
      bash "$PEERS/scratch-fs.sh" umount "$OUT/scratch" >/dev/null ;;
  esac
done
