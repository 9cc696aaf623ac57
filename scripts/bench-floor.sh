#!/usr/bin/env bash
# The floor of a pull with plain tools: for each image, every layer is fetched from the
# loopback registry with curl, written to a file (the blob store's copy), hashed
# (`openssl dgst -sha256`, SHA-NI, 5x coreutils' sha256sum here, of the compressed and of
# the uncompressed stream), decompressed (pigz or
# zstd) and extracted with GNU tar into a directory of its own (overlay-style layers,
# whiteouts not applied); two layers at a time (two cores). No metadata, no fsync, no
# checks: what plain tools do on the same filesystem.
#
# Sourced by the other bench scripts for `floor_pull DIR REF`; run alone it prints
# min/median/max per image and filesystem.
#
# usage: scripts/bench-floor.sh [RUNS]   env: IMAGES ("debian:minbase debian:multi
#        debian-zstd:multi"), FS ("tmpfs scratch root"), REGISTRY_ADDR, OUT
# needs: ../shared/peers/install.sh, registry.sh start, build-images.sh; curl, jq, pigz, zstd
set -euo pipefail

# Fetch + hash + decompress + extract of one layer: url media-type dir.
floor_layer() {
  local url=$1 mt=$2 dir=$3 dec
  case $mt in
    *zstd*) dec="zstd -dcq" ;;
    *gzip*) dec="pigz -dc" ;;
    *) dec=cat ;;
  esac
  mkdir -p "$dir/fs"
  curl -fsS "$url" | tee "$dir/blob" >(openssl dgst -sha256 -r >"$dir/blob.sha256") |
    $dec | tee >(openssl dgst -sha256 -r >"$dir/diff.sha256") | tar -x -C "$dir/fs"
}
export -f floor_layer

# The layers of REF as "url media-type" lines (from the registry's manifest).
floor_layers() { # ref
  local ref=$1 host=${1%%/*} rest=${1#*/} repo tag
  repo=${rest%:*}; tag=${rest##*:}
  curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
    "http://$host/v2/$repo/manifests/$tag" |
    jq -r --arg b "http://$host/v2/$repo/blobs/" '.layers[] | "\($b)\(.digest) \(.mediaType)"'
}

# Times one floor pull of REF into DIR (which must not exist); prints wall seconds.
floor_pull() { # dir ref
  local dir=$1 ref=$2 layers t0 t1 i=0
  layers=$(floor_layers "$ref")
  mkdir -p "$dir"
  sync
  t0=$(date +%s.%N)
  while read -r url mt; do
    i=$((i + 1)); echo "$url $mt $dir/l$i"
  done <<<"$layers" | xargs -P 2 -L 1 bash -c 'floor_layer "$0" "$1" "$2"'
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  RUNS=${1:-3}
  HERE=$(cd "$(dirname "$0")/.." && pwd)
  . "$HERE/scripts/lib.sh"
  REG=${REGISTRY_ADDR:-127.0.0.1:5000}
  IMAGES=${IMAGES:-debian:minbase debian:multi debian-zstd:multi}
  FS=${FS:-tmpfs scratch root}
  OUT=${OUT:-/tmp/strata-bench-floor}
  mkdir -p "$OUT"
  echo "# $(date -u +%FT%TZ) floor (curl | tee file, openssl sha256 x2, pigz/zstd -d | tar -x; 2 layers at a time), $RUNS runs" | tee -a "$OUT/summary"
  for fs in $FS; do
    for img in $IMAGES; do
      g=$OUT/group
      fs_start "$fs" "$g"
      t=()
      for i in $(seq "$RUNS"); do
        steady_start
        t+=("$(floor_pull "$g/floor-$i" "$REG/$img")")
        [ "$fs" = tmpfs ] && rm -rf "$g/floor-$i"
      done
      fs_end "$fs" "$g"
      printf '%-7s %-20s floor %s\n' "$fs" "$img" "$(printf '%s\n' "${t[@]}" | spread)" | tee -a "$OUT/summary"
    done
  done
fi
