#!/usr/bin/env bash
# Whole-command comparison, in one run on this machine, of pulling the ../shared/peers Debian
# images from the loopback registry:
#   strata image pull (overlay, native)  vs  containerd 1.6 `ctr images pull --snapshotter
#   overlayfs|native` (a fresh private daemon per run)  and  `umoci unpack` of the same image
#   (from an OCI layout, so it is unpack only)
# on a fresh tmpfs, a fresh loop ext4 (../shared/peers/scratch-fs.sh) and the root fs, with
# containerd's root on the same filesystem as ours, and the floor (bench-floor.sh: curl |
# openssl sha256 | pigz/zstd -d | tar -x, two layers at a time) on the same filesystem. Every
# timed run starts from the same state (caches dropped, registry blobs and binaries
# re-read: steady_start in lib.sh); the tools are interleaved; each group reports
# min/median/max and is flagged SPREAD when max/min > 1.3. Then the commit of the 2,000-file change of
# ../shared/peers/modify-tree.sh on debian:multi (gzip), timed end to end.
# Prints every sample, min/median/max, ratios strata/containerd and strata/floor and peak
# RSS, and appends to the markdown table the README embeds ($OUT/table.md; one header,
# then a dated line and the rows of each invocation, so several invocations with one OUT
# make one table).
#
# No tree is deleted while a group of runs (one image, one snapshotter) is timed: each run
# gets its own directory and they are removed together after the group, followed by
# SETTLE seconds of rest. Creating inodes on ext4 right after deleting thousands costs up
# to 10x more kernel time (ext4's inode allocator skips, one by one, inodes deleted in the
# last 60-300 s: `recently_deleted` in perf), which made single runs vary 2-15 s and
# would bill one tool for the other's cleanup. On the scratch fs each group gets a fresh
# ext4.
#
# usage: scripts/bench-pull.sh [RUNS]   env: IMAGES ("debian:minbase debian:multi
#        debian-zstd:multi"), FS ("tmpfs scratch root"), SNAPSHOTTERS ("overlay native"),
#        FLOOR (1: time the floor pipeline in each overlay group),
#        EXTRAS (1: also umoci unpack and the commit), SETTLE (seconds of rest after a
#        group's cleanup on the root fs; 120), REGISTRY_ADDR, PEERS_DATA
# needs: ../shared/peers/install.sh, registry.sh start, build-images.sh
set -euo pipefail
RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib.sh"
. "$HERE/scripts/bench-floor.sh"
PEERS=$(cd "$HERE/../shared/peers" && pwd)
REG=${REGISTRY_ADDR:-127.0.0.1:5000}
DATA=${PEERS_DATA:-/tmp/peers-data}
IMAGES=${IMAGES:-debian:minbase debian:multi debian-zstd:multi}
FS=${FS:-tmpfs scratch root}
FLOOR=${FLOOR:-1}
SNAPSHOTTERS=${SNAPSHOTTERS:-overlay native}
EXTRAS=${EXTRAS:-1}
SETTLE=${SETTLE:-120}
OUT=${OUT:-/tmp/strata-bench-pull}
mkdir -p "$OUT"

(cd "$HERE" && cargo build --release --example strata -q)
STRATA=$HERE/target/release/examples/strata

# containerd: a fresh daemon per run (ctd_start in lib.sh), its root under the run's dir
ctd_stop() { # base (kept on disk until the group's cleanup)
  ctd_kill
  unmount_under "$1"
}
# A finished run's tree: deleted at once on tmpfs (it costs nothing there and keeps memory
# use the same for every run), kept elsewhere until the group ends.
drop_run() { # fs dir
  if [ "$1" = tmpfs ]; then unmount_under "$2"; rm -rf "$2"; fi
}

# One group's lines: the summary (every sample) and a row of the markdown table.
report() { # fs image snapshotter "strata samples" "ctr samples" "floor samples" rss-kib
  local sp cp fp sm cm fm ratio fratio=-
  sp=$(tr ' ' '\n' <<<"$4" | spread); cp=$(tr ' ' '\n' <<<"$5" | spread)
  sm=$(cut -d' ' -f2 <<<"$sp"); cm=$(cut -d' ' -f2 <<<"$cp")
  ratio=$(printf '%.2f' "$(echo "$sm / $cm" | bc -l)")
  fp=-
  if [ -n "$6" ]; then
    fp=$(tr ' ' '\n' <<<"$6" | spread); fm=$(cut -d' ' -f2 <<<"$fp")
    fratio=$(printf '%.2f' "$(echo "$sm / $fm" | bc -l)")
  fi
  printf '%-7s %-20s %-8s strata %s  ctr %s  ratio %s  floor %s (x%s)  strata peak RSS %d MiB  (strata: %s; ctr: %s; floor: %s)\n' \
    "$1" "$2" "$3" "$sp" "$cp" "$ratio" "$fp" "$fratio" "$(($7 / 1024))" "$4" "$5" "$6" | tee -a "$OUT/summary"
  printf '| %s | %s | %s | %s | %s | **%s×** | %s | %s× | %d MiB |\n' \
    "$1" "$2" "$3" "$sp" "$cp" "$ratio" "$fp" "$fratio" "$(($7 / 1024))" >>"$OUT/table.md"
}

run_fs() { # label dir
  local label=$1 dir=$2
  for img in $IMAGES; do
    local ref="$REG/$img" sn ctdsn
    for sn in $SNAPSHOTTERS; do
      ctdsn=$([ $sn = overlay ] && echo overlayfs || echo native)
      local s=() c=() f=() rs=() i out g=$dir/group
      fs_start "$label" "$g"
      for i in $(seq "$RUNS"); do
        # Interleaved, each from the same state (steady_start in lib.sh).
        steady_start "$STRATA"
        out=$(timed "$STRATA" --root "$g/strata-$i" --snapshotter $sn image pull --plain-http "$ref")
        s+=("${out% *}"); rs+=("${out#* }")
        unmount_under "$g/strata-$i"; drop_run "$label" "$g/strata-$i"
        steady_start
        ctd_start "$g/ctd-$i"
        out=$(timed ctr -a "$g/ctd-$i/c.sock" -n bench images pull --plain-http --snapshotter "$ctdsn" "$ref")
        c+=("${out% *}")
        ctd_stop "$g/ctd-$i"; drop_run "$label" "$g/ctd-$i"
        if [ "$FLOOR" = 1 ] && [ "$sn" = overlay ]; then
          steady_start
          f+=("$(floor_pull "$g/floor-$i" "$ref")"); drop_run "$label" "$g/floor-$i"
        fi
      done
      fs_end "$label" "$g"
      report "$label" "$img" "$sn" "${s[*]}" "${c[*]}" "${f[*]}" "$(printf '%s\n' "${rs[@]}" | sort -g | tail -1)"
    done
    # umoci unpack of the same image (from the OCI layout built by build-images.sh)
    local layout tag u=() out
    case $img in
      debian-zstd:*) layout=$DATA/oci/debian-zstd ;;
      *) layout=$DATA/oci/debian ;;
    esac
    tag=${img#*:}
    if [ "$EXTRAS" = 1 ] && command -v umoci >/dev/null && [ -d "$layout" ] && [ "${img%%:*}" = debian ]; then
      fs_start "$label" "$dir/group"
      for i in $(seq "$RUNS"); do
        out=$(timed umoci unpack --image "$layout:$tag" "$dir/group/umoci-$i")
        u+=("${out% *}")
      done
      fs_end "$label" "$dir/group"
      printf '%-7s %-20s umoci unpack %6.2fs (unpack only, no download)\n' "$label" "$img" \
        "$(printf '%s\n' "${u[@]}" | median)" | tee -a "$OUT/summary"
    fi
  done
  # commit: the 2,000-file change on debian:multi, gzip, overlay
  if [ "$EXTRAS" = 1 ] && [[ " $IMAGES " == *" debian:multi "* ]]; then
    local cm=() out g=$dir/group
    fs_start "$label" "$g"
    for i in $(seq "$RUNS"); do
      local st=$g/strata-$i
      "$STRATA" --root "$st" --snapshotter overlay image pull --plain-http "$REG/debian:multi" >/dev/null 2>&1
      "$STRATA" --root "$st" --snapshotter overlay snapshot prepare ctr --from-image "$REG/debian:multi" >/dev/null
      mkdir -p "$g/mnt"
      "$STRATA" --root "$st" --snapshotter overlay snapshot mount ctr "$g/mnt"
      bash "$PEERS/modify-tree.sh" "$g/mnt" >/dev/null
      umount "$g/mnt"
      out=$(timed "$STRATA" --root "$st" --snapshotter overlay image commit ctr bench/committed:1)
      cm+=("${out% *}")
      unmount_under "$st"
    done
    fs_end "$label" "$g"
    printf '%-7s debian:multi commit of the modify-tree.sh change (gzip, overlay): %.2fs\n' "$label" \
      "$(printf '%s\n' "${cm[@]}" | median)" | tee -a "$OUT/summary"
  fi
}

echo "# $(date -u +%FT%TZ) strata bench-pull, $RUNS runs, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary"
if [ ! -s "$OUT/table.md" ]; then
  {
    echo "Pull, $(nproc) cores; seconds as min median max (SPREAD: max/min > 1.3)."
    echo
    echo "| fs | image | snapshotter | strata | containerd 1.6 | strata/ctr (medians) | floor | strata/floor | strata peak RSS |"
    echo "|---|---|---|---|---|---|---|---|---|"
  } >"$OUT/table.md"
fi
echo "| $(date -u +%F) | \`scripts/bench-pull.sh $RUNS\` | IMAGES=\"$IMAGES\" FS=\"$FS\" SNAPSHOTTERS=\"$SNAPSHOTTERS\" | | | | | | |" >>"$OUT/table.md"
for fs in $FS; do
  run_fs "$fs" "$OUT/$fs"
done
echo "markdown table: $OUT/table.md"
