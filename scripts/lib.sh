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
