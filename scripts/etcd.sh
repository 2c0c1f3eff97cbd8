#!/usr/bin/env bash
# Test support: runs etcd (Debian's etcd-server, `etcd` on PATH) on free loopback ports.
#
#   scripts/etcd.sh start <dir>          one member under <dir>
#   scripts/etcd.sh start-cluster <dir>  three members (m0, m1, m2) under <dir>
#   scripts/etcd.sh stop <dir>           stop every member started under <dir>
#
# `start` and `start-cluster` wait until every member is healthy, then print one line on stdout,
#   export KYB_ETCD_ENDPOINTS=http://127.0.0.1:PORT[,...]
# (also written to <dir>/env), so a caller can `eval "$(scripts/etcd.sh start "$dir")"`.
# Data and logs live in <dir>/<member>/{data,etcd.log}; pids in <dir>/<member>/etcd.pid.
# Nothing listens beyond 127.0.0.1.
set -euo pipefail

START_TIMEOUT=${KYB_ETCD_START_TIMEOUT:-60}

die() { echo "etcd.sh: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 start <dir> | start-cluster <dir> | stop <dir>" >&2
  exit 2
}

# A TCP port on 127.0.0.1 that nothing listens on (and not handed out before in this run).
USED_PORTS=" "
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$(( 20000 + RANDOM % 40000 ))
    case "$USED_PORTS" in *" $port "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      USED_PORTS="$USED_PORTS$port "
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
}

# GET /health on 127.0.0.1:<port> answers "health":"true".
healthy() {
  local port=$1 reply
  reply=$( { exec 3<>"/dev/tcp/127.0.0.1/$port" &&
             printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
             timeout 2 cat <&3; } 2>/dev/null ) || return 1
  [[ "$reply" == *'"health":"true"'* ]]
}

# start_members <dir> <count>
start_members() {
  local dir=$1 count=$2 i
  command -v etcd >/dev/null 2>&1 || die "no etcd on PATH (apt-get install etcd-server)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for i in $(seq 0 $((count - 1))); do
    [[ -f "$dir/m$i/etcd.pid" ]] && kill -0 "$(cat "$dir/m$i/etcd.pid")" 2>/dev/null &&
      die "member m$i is already running under $dir (stop it first)"
  done
  local client_ports=() peer_ports=() initial="" token
  token="kyb-$(basename "$dir")-$$"
  for i in $(seq 0 $((count - 1))); do
    client_ports+=("$(free_port)")
    peer_ports+=("$(free_port)")
    initial="${initial:+$initial,}m$i=http://127.0.0.1:${peer_ports[$i]}"
  done
  for i in $(seq 0 $((count - 1))); do
    local mdir="$dir/m$i" client="http://127.0.0.1:${client_ports[$i]}" peer="http://127.0.0.1:${peer_ports[$i]}"
    mkdir -p "$mdir"
    nohup etcd --name "m$i" --data-dir "$mdir/data" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "$token" \
      >"$mdir/etcd.log" 2>&1 </dev/null &
    echo $! >"$mdir/etcd.pid"
  done
  local deadline=$(( SECONDS + START_TIMEOUT ))
  for i in $(seq 0 $((count - 1))); do
    until healthy "${client_ports[$i]}"; do
      if ! kill -0 "$(cat "$dir/m$i/etcd.pid")" 2>/dev/null; then
        tail -n 30 "$dir/m$i/etcd.log" >&2 || true
        stop_members "$dir"
        die "member m$i exited during startup (log above)"
      fi
      if (( SECONDS > deadline )); then
        tail -n 30 "$dir/m$i/etcd.log" >&2 || true
        stop_members "$dir"
        die "member m$i not healthy within ${START_TIMEOUT}s (log above)"
      fi
      sleep 0.2
    done
  done
  local endpoints=""
  for i in $(seq 0 $((count - 1))); do
    endpoints="${endpoints:+$endpoints,}http://127.0.0.1:${client_ports[$i]}"
  done
  echo "export KYB_ETCD_ENDPOINTS=$endpoints" | tee "$dir/env"
  echo "etcd.sh: $count member(s) healthy under $dir: $endpoints" >&2
}

stop_members() {
  local dir=$1 pidfile pid stopped=0
  [[ -d "$dir" ]] || return 0
  for pidfile in "$dir"/m*/etcd.pid; do
    [[ -f "$pidfile" ]] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      stopped=$((stopped + 1))
    fi
    rm -f "$pidfile"
  done
  echo "etcd.sh: stopped $stopped member(s) under $dir" >&2
}

[[ $# -eq 2 ]] || usage
case "$1" in
  start) start_members "$2" 1 ;;
  start-cluster) start_members "$2" 3 ;;
  stop) stop_members "$2" ;;
  *) usage ;;
esac
