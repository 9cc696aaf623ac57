#!/usr/bin/env bash
# Fetch (download only, no unpack) of an image from a loopback registry:
# `strata image pull --no-unpack` against containerd 1.6 `ctr content fetch`,
# interleaved, RUNS times each, fresh state every run (containerd: a fresh private
# daemon per run, started before the clock). Prints medians, the ratio and strata's
# peak RSS.
#
#   scripts/bench-fetch.sh [IMAGE]      IMAGE default: debian:multi
#   env: REGISTRY_ADDR (127.0.0.1:5000), RUNS (5), BENCH_DIR (/tmp/strata-bench-fetch),
#        STRATA (path of a built `strata` example; default: build it in release)
#
# Needs: the peers registry with the test images (/work/shared/peers/registry.sh start;
# build-images.sh), containerd + ctr, GNU time.
set -euo pipefail
IMAGE=${1:-debian:multi}
REG=${REGISTRY_ADDR:-127.0.0.1:5000}
RUNS=${RUNS:-5}
DIR=${BENCH_DIR:-/tmp/strata-bench-fetch}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CTD=$DIR/ctd
SOCK=$CTD/containerd.sock
CTR=(ctr -a "$SOCK" -n bench)
DAEMON_PID=

if [ -z "${STRATA:-}" ]; then
  (cd "$ROOT" && cargo build --release --example strata >&2)
  STRATA=$ROOT/target/release/examples/strata
fi
curl -fsS "http://$REG/v2/" >/dev/null || { echo "no registry at $REG" >&2; exit 1; }
mkdir -p "$DIR"

ctd_stop() {
  if [ -n "$DAEMON_PID" ]; then
    kill "$DAEMON_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  DAEMON_PID=
  rm -rf "$CTD"
}
ctd_fresh() {
  ctd_stop
  mkdir -p "$CTD"
  cat > "$CTD/config.toml" <<EOF
version = 2
root = "$CTD/root"
state = "$CTD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$CTD/debug.sock"
  level = "warn"
EOF
  containerd --config "$CTD/config.toml" > "$DIR/containerd.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 100); do "${CTR[@]}" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "containerd did not start" >&2; tail "$DIR/containerd.log" >&2; exit 1
}
trap 'ctd_stop; rm -rf "$DIR/strata-root"' EXIT

median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }

S_WALL=(); S_RSS=(); C_WALL=(); C_HWM=()
for i in $(seq 1 "$RUNS"); do
  rm -rf "$DIR/strata-root"; sync
  /usr/bin/time -f '%e %M' -o "$DIR/time" "$STRATA" --root "$DIR/strata-root" \
    image pull --no-unpack "$REG/$IMAGE" > /dev/null 2> "$DIR/strata.err" \
    || { cat "$DIR/strata.err" >&2; exit 1; }
  read -r w r < "$DIR/time"; S_WALL+=("$w"); S_RSS+=("$r")

  ctd_fresh; sync
  /usr/bin/time -f '%e %M' -o "$DIR/time" "${CTR[@]}" content fetch --plain-http "$REG/$IMAGE" > /dev/null 2>&1
  read -r w _ < "$DIR/time"; C_WALL+=("$w")
  C_HWM+=("$(awk '/VmHWM/{print $2}' "/proc/$DAEMON_PID/status")")
  ctd_stop
  echo "run $i: strata ${S_WALL[-1]} s (${S_RSS[-1]} KiB)  ctr ${C_WALL[-1]} s" >&2
done

SW=$(printf '%s\n' "${S_WALL[@]}" | median)
CW=$(printf '%s\n' "${C_WALL[@]}" | median)
SR=$(printf '%s\n' "${S_RSS[@]}" | sort -g | tail -1)
CH=$(printf '%s\n' "${C_HWM[@]}" | sort -g | tail -1)
echo "# $(date -u +%FT%TZ) image=$REG/$IMAGE runs=$RUNS nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "strata image pull --no-unpack: median ${SW} s  (walls: ${S_WALL[*]})  peak RSS $((SR / 1024)) MiB"
echo "ctr content fetch:             median ${CW} s  (walls: ${C_WALL[*]})  containerd peak RSS $((CH / 1024)) MiB"
awk -v s="$SW" -v c="$CW" 'BEGIN{ r = s / c; printf "ratio strata/ctr = %.2f (target <= 0.80): %s\n", r, (r <= 0.8 ? "PASS" : "FAIL") }'
awk -v r="$SR" 'BEGIN{ printf "strata peak RSS = %.1f MiB (target < 64): %s\n", r/1024, (r < 65536 ? "PASS" : "FAIL") }'
