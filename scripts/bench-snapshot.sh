#!/usr/bin/env bash
# Native snapshotter `prepare` on a parent of N files (default 10,000) against `cp -a` of
# the same tree, on the same filesystem, alternating runs; prints medians and the ratio.
#
#   scripts/bench-snapshot.sh [DIR] [RUNS] [FILES]
#
# DIR (default /tmp/strata-bench-snapshot) must be on the filesystem to measure; for a
# "normal" disk use /work/shared/peers/scratch-fs.sh mount /mnt/scratch, then pass
# /mnt/scratch/bench. Needs root (chown of the tree). Uses the release CLI
# (cargo build --release --example strata).
set -euo pipefail
dir=${1:-/tmp/strata-bench-snapshot}; runs=${2:-5}; files=${3:-10000}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${STRATA_BIN:-$here/target/release/examples/strata}
[ -x "$bin" ] || (cd "$here" && cargo build --release --example strata)
rm -rf "$dir"; mkdir -p "$dir"
root=$dir/root
S() { "$bin" --root "$root" --snapshotter native snapshot "$@"; }

# The parent: a deterministic tree (files of 100 B – 64 KiB, median ~7 KiB, in nested
# dirs, with symlinks, hardlinks, xattrs and a few owners), committed as "base".
S prepare base-a >/dev/null
tree=$(S mounts base-a | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["source"])')
python3 - "$tree" "$files" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
r = random.Random(42)
dirs = [root]
for i in range(max(1, n // 25)):
    d = os.path.join(r.choice(dirs), f"d{i}")
    os.makedirs(d, exist_ok=True); dirs.append(d)
made = []
for i in range(n):
    p = os.path.join(r.choice(dirs), f"f{i}")
    k = r.random()
    if k < 0.02 and made:
        os.symlink(os.path.relpath(r.choice(made), os.path.dirname(p)), p); continue
    if k < 0.03 and made:
        os.link(r.choice(made), p); continue
    size = int(min(65536, max(100, r.lognormvariate(8.85, 1.0))))
    with open(p, "wb") as f: f.write(r.randbytes(size))
    os.chmod(p, r.choice([0o644, 0o755, 0o600]))
    if k > 0.97: os.chown(p, 1000, 1000)
    if k > 0.995: os.setxattr(p, "user.bench", b"1")
    made.append(p)
PY
S commit base base-a
echo "parent: $(find "$tree" | wc -l) entries, $(du -sh "$tree" | cut -f1) on $(df -T "$dir" | awk 'NR==2{print $2" "$7}')"
sync

ours=(); theirs=()
run_ours() {
  local t0 t1; t0=$(date +%s.%N); S prepare "bench-$1" base >/dev/null; t1=$(date +%s.%N)
  ours+=("$(echo "$t1 - $t0" | bc)")
}
run_cp() {
  local t0 t1; t0=$(date +%s.%N); cp -a "$tree" "$dir/cp-$1"; t1=$(date +%s.%N)
  theirs+=("$(echo "$t1 - $t0" | bc)")
}
for i in $(seq 1 "$runs"); do
  # Alternate which goes first, so neither always meets the other's writeback.
  if (( i % 2 )); then run_ours "$i"; sync; run_cp "$i"; else run_cp "$i"; sync; run_ours "$i"; fi
  S rm "bench-$i"; rm -rf "$dir/cp-$i"; sync
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
mo=$(median "${ours[@]}"); mt=$(median "${theirs[@]}")
echo "native prepare: ${ours[*]}  (median $mo s)"
echo "cp -a:          ${theirs[*]}  (median $mt s)"
echo "ratio prepare / cp -a = $(echo "scale=3; $mo / $mt" | bc)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$dir"
