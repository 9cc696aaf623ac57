#!/usr/bin/env bash
# Scaling: synthetic images built with plain tools (GNU tar, pigz, sha256sum, jq) as OCI
# layouts and copied to the loopback registry with skopeo, each in a small and a large
# variant, then pulled with strata on a fresh filesystem; reports seconds per file and per
# GB and peak RSS, so growth from the small to the large variant shows whether cost is
# linear. Variants:
#   synth/files:10k, synth/files:100k   one layer of 10,000 / 100,000 small files (1-4 KiB)
#   synth/big:256m,  synth/big:2g       one layer holding one random file of 256 MiB / 2 GiB
#   synth/layers:5,  synth/layers:50    5 / 50 layers of 200 small files each
#
# usage: scripts/bench-scale.sh [RUNS]   env: FS (scratch), SNAPSHOTTERS (overlay),
#        VARIANTS (all of the above, as repo:tag), REGISTRY_ADDR, OUT, WORK (generator dir)
# needs: ../shared/peers/install.sh, registry.sh start; skopeo, pigz, jq
set -euo pipefail
RUNS=${1:-1}
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib.sh"
REG=${REGISTRY_ADDR:-127.0.0.1:5000}
FS=${FS:-scratch}
SNAPSHOTTERS=${SNAPSHOTTERS:-overlay}
VARIANTS=${VARIANTS:-files:10k files:100k big:256m big:2g layers:5 layers:50}
OUT=${OUT:-/tmp/strata-bench-scale}
WORK=${WORK:-/tmp/strata-synth}
mkdir -p "$OUT" "$WORK"

# --- generator -------------------------------------------------------------------------

# Adds directory SRC as a gzip layer to the layout at L; appends "digest diffid size" to
# L/layers.
add_layer() { # layout src
  local l=$1 src=$2 tarf diffid digest
  tarf=$(mktemp -p "$l")
  tar -C "$src" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -cf "$tarf" .
  diffid=sha256:$(sha256sum "$tarf" | cut -d' ' -f1)
  pigz -1 -n -c "$tarf" >"$tarf.gz"
  digest=sha256:$(sha256sum "$tarf.gz" | cut -d' ' -f1)
  mv "$tarf.gz" "$l/blobs/sha256/${digest#sha256:}"
  echo "$digest $diffid $(stat -c %s "$l/blobs/sha256/${digest#sha256:}")" >>"$l/layers"
  rm -f "$tarf"
}

# Writes a blob (stdin) into layout L; prints "digest size".
put_blob() { # layout
  local t d
  t=$(mktemp -p "$1"); cat >"$t"
  d=$(sha256sum "$t" | cut -d' ' -f1)
  mv "$t" "$1/blobs/sha256/$d"
  echo "sha256:$d $(stat -c %s "$1/blobs/sha256/$d")"
}

# Config, manifest and index for the layers of layout L, tagged TAG.
finish_layout() { # layout tag
  local l=$1 tag=$2 cfg man
  cfg=$(jq -n --arg d "$(cut -d' ' -f2 "$l/layers" | jq -R . | jq -s -c .)" \
    '{architecture:"amd64",os:"linux",config:{},rootfs:{type:"layers",diff_ids:($d|fromjson)}}' | put_blob "$l")
  man=$(jq -n --arg c "${cfg% *}" --argjson cs "${cfg#* }" --rawfile layers "$l/layers" '{
      schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$c,size:$cs},
      layers:[$layers|split("\n")[]|select(length>0)|split(" ")|
        {mediaType:"application/vnd.oci.image.layer.v1.tar+gzip",digest:.[0],size:(.[2]|tonumber)}]}' |
    put_blob "$l")
  jq -n --arg d "${man% *}" --argjson s "${man#* }" --arg t "$tag" '{schemaVersion:2,manifests:[
      {mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$d,size:$s,
       annotations:{"org.opencontainers.image.ref.name":$t}}]}' >"$l/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$l/oci-layout"
}

# N small files (1-4 KiB, deterministic) in DIR, 1,000 per directory.
small_files() { # dir n prefix
  python3 - "$@" <<'PY'
import os, sys
d, n, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    sub = os.path.join(d, f"{prefix}{i // 1000:03d}")
    if i % 1000 == 0:
        os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i:06d}"), "wb") as f:
        f.write((f"{prefix} file {i}\n" * 400)[: 1024 + (i * 37) % 3072].encode())
PY
}

generate() { # repo:tag
  local v=$1 l=$WORK/${1/:/-} src
  rm -rf "$l"; mkdir -p "$l/blobs/sha256"; : >"$l/layers"
  src=$(mktemp -d -p "$WORK")
  case $v in
    files:10k) small_files "$src" 10000 d; add_layer "$l" "$src" ;;
    files:100k) small_files "$src" 100000 d; add_layer "$l" "$src" ;;
    big:256m) head -c 256M /dev/urandom >"$src/big"; add_layer "$l" "$src" ;;
    big:2g) head -c 2G /dev/urandom >"$src/big"; add_layer "$l" "$src" ;;
    layers:*)
      for i in $(seq "${v#layers:}"); do
        rm -rf "$src"; mkdir -p "$src"; small_files "$src" 200 "l${i}_"; add_layer "$l" "$src"
      done ;;
    *) echo "unknown variant $v" >&2; return 1 ;;
  esac
  rm -rf "$src"
  finish_layout "$l" "${v#*:}"
  skopeo copy -q --dest-tls-verify=false "oci:$l:${v#*:}" "docker://$REG/synth/$v"
  rm -rf "$l"
}

# --- measurement -----------------------------------------------------------------------

(cd "$HERE" && cargo build --release --example strata -q)
STRATA=$HERE/target/release/examples/strata

for v in $VARIANTS; do
  if ! curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REG/v2/synth/${v%%:*}/manifests/${v#*:}"; then
    echo "generating synth/$v" >&2
    generate "$v"
  fi
done

echo "# $(date -u +%FT%TZ) strata bench-scale, $RUNS runs, FS=$FS" | tee -a "$OUT/summary"
for fs in $FS; do
  for sn in $SNAPSHOTTERS; do
    for v in $VARIANTS; do
      g=$OUT/group t=() rss=()
      fs_start "$fs" "$g"
      for i in $(seq "$RUNS"); do
        steady_start "$STRATA"
        /usr/bin/time -f "%e %M" -o "$OUT/time.out" "$STRATA" --root "$g/s-$i" --snapshotter "$sn" \
          image pull --plain-http "$REG/synth/$v" >"$OUT/cmd.out" 2>"$OUT/cmd.err" ||
          { echo "FAILED: pull synth/$v" >&2; tail -5 "$OUT/cmd.err" >&2; exit 1; }
        read -r sec kib <"$OUT/time.out"; t+=("$sec"); rss+=("$kib")
        if [ "$i" = 1 ]; then
          files=$(find "$g/s-$i/snapshots" -type f | wc -l)
          bytes=$(du -sb "$g/s-$i/snapshots" | cut -f1)
        fi
        unmount_under "$g/s-$i"; [ "$fs" = tmpfs ] && rm -rf "$g/s-$i"
      done
      fs_end "$fs" "$g"
      sp=$(printf '%s\n' "${t[@]}" | spread); med=$(cut -d' ' -f2 <<<"$sp")
      maxrss=$(printf '%s\n' "${rss[@]}" | sort -g | tail -1)
      printf '%-7s %-8s synth/%-12s %s s  %8d files %6.2f GB  %7.1f us/file  %6.2f s/GB  peak RSS %d MiB\n' \
        "$fs" "$sn" "$v" "$sp" "$files" "$(echo "$bytes / 1000000000" | bc -l)" \
        "$(echo "$med * 1000000 / $files" | bc -l)" "$(echo "$med * 1000000000 / $bytes" | bc -l)" \
        "$((maxrss / 1024))" | tee -a "$OUT/summary"
    done
  done
done
