# Shell pieces shared by the bench-*.sh scripts (sourced, not run).

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Unmounts everything mounted below DIR, deepest first.
unmount_under() { # dir
  findmnt -rn -o TARGET | grep "^$1/" | sort -r | while read -r m; do umount "$m" || umount -l "$m"; done || true
}

# A private containerd 1.6 daemon with its root, state and socket ($base/c.sock) under
# BASE; EXTRA (optional) is appended to its config.toml. Its pid in CTD_PID.
CTD_PID=
ctd_start() { # base [extra-config]
  local base=$1 extra=${2:-}
  mkdir -p "$base"
  cat >"$base/config.toml" <<CONF
version = 2
root = "$base/root"
state = "$base/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$base/c.sock"
[ttrpc]
  address = "$base/c.sock.ttrpc"
$extra
CONF
  containerd --config "$base/config.toml" >>"$base/log" 2>&1 &
  CTD_PID=$!
  for _ in $(seq 100); do ctr -a "$base/c.sock" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "containerd did not start" >&2
  return 1
}

# Stops the daemon ctd_start started, if any.
ctd_kill() {
  if [ -n "$CTD_PID" ]; then kill "$CTD_PID" 2>/dev/null || true; wait "$CTD_PID" 2>/dev/null || true; fi
  CTD_PID=
}

# One timed run of a command, after a sync: prints "seconds max_rss_kib". Its output
# goes to $OUT/cmd.out and $OUT/cmd.err; a failure prints the command and the end of
# its stderr.
timed() {
  sync
  /usr/bin/time -f "%e %M" -o "$OUT/time.out" "$@" >"$OUT/cmd.out" 2>"$OUT/cmd.err" ||
    { echo "FAILED: $*" >&2; tail -5 "$OUT/cmd.err" >&2; return 1; }
  cat "$OUT/time.out"
}

# "min median max" of the numbers on stdin, with " SPREAD" appended when max/min > 1.3
# (such a group is re-run or reported as flagged, never silently).
spread() {
  sort -g | awk '{a[NR]=$1} END {
    m = (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2);
    printf "%.2f %.2f %.2f%s\n", a[1], m, a[NR], (a[1] > 0 && a[NR]/a[1] > 1.3 ? " SPREAD" : "") }'
}

# The same starting state for every timed run: dirty pages written, caches dropped, then
# the registry's blobs and the tools' binaries read back into the page cache (a pull
# reads them from memory, as a warm registry serves them).
steady_start() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
  local data=${PEERS_DATA:-/tmp/peers-data}
  [ -d "$data/registry" ] && find "$data/registry" -type f -exec cat {} + >/dev/null
  local b
  for b in "$@" "$(command -v ctr)" "$(command -v containerd)"; do [ -f "$b" ] && cat "$b" >/dev/null; done
  return 0
}

# A place for one group of runs on filesystem FS: a fresh tmpfs, a fresh loop ext4
# (../shared/peers/scratch-fs.sh), or a new directory on the root fs.
fs_start() { # fs dir
  mkdir -p "$(dirname "$2")"
  case $1 in
    tmpfs) mkdir -p "$2"; mount -t tmpfs -o size=12G tmpfs "$2" ;;
    scratch) bash "$(dirname "${BASH_SOURCE[0]}")/../../shared/peers/scratch-fs.sh" mount "$2" 24G >/dev/null ;;
    *) mkdir -p "$2" ;;
  esac
}

# Ends a group: unmounts what runs left mounted, then drops the filesystem. On the root
# fs the trees are deleted after the group and SETTLE seconds pass (ext4 makes new
# inodes slow for a while after mass deletes: see bench-pull.sh).
fs_end() { # fs dir
  unmount_under "$2"
  case $1 in
    tmpfs) umount "$2" || umount -l "$2" ;;
    scratch) bash "$(dirname "${BASH_SOURCE[0]}")/../../shared/peers/scratch-fs.sh" umount "$2" >/dev/null ;;
    *) rm -rf "$2"; sync; sleep "${SETTLE:-120}" ;;
  esac
}
