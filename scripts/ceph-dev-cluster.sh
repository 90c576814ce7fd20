#!/bin/bash
# A throwaway single-host Ceph cluster for rtgt's RBD tests and benchmarks,
# from the distribution's packages (Debian 12: Ceph 16, packages ceph-mon,
# ceph-mgr, ceph-osd, ceph-common, rbd-* come with `ceph`). No systemd, no
# root-owned paths: everything lives in DIR.
#
#   scripts/ceph-dev-cluster.sh start DIR   # last line of output: DIR/ceph.conf
#   scripts/ceph-dev-cluster.sh stop DIR    # stops the daemons (DIR stays)
#   scripts/ceph-dev-cluster.sh purge DIR   # stops them and removes DIR
#   scripts/ceph-dev-cluster.sh osd-stop DIR ID / osd-start DIR ID
#   scripts/ceph-dev-cluster.sh osd-pause DIR ID / osd-resume DIR ID   # SIGSTOP/SIGCONT: a hung OSD
#   scripts/ceph-dev-cluster.sh mon-stop DIR / mon-start DIR
#
# One mon (msgr2 and v1 on 127.0.0.1), one mgr, OSDS (default 1, up to 3)
# OSDs on memstore (OSD_BYTES each, default 2G of RAM, nothing on disk),
# cephx on with client.admin's key in DIR/keyring, pool POOL (default
# "rbd", size = OSDS) and the images IMAGES names ("img0:1G img1:256M" by
# default). Ports: MON_PORT (v2, default a free one) and MON_PORT+1 (v1).
set -euo pipefail

die() { echo "ceph-dev-cluster: $*" >&2; exit 1; }
log() { echo "ceph-dev-cluster: $*" >&2; }

cmd="${1:-}"; DIR="${2:-}"
[[ -n "$cmd" && -n "$DIR" ]] || die "usage: $0 start|stop|purge|osd-stop|osd-start|mon-stop|mon-start DIR [ID]"

OSDS="${OSDS:-1}" OSD_BYTES="${OSD_BYTES:-2G}" POOL="${POOL:-rbd}"
IMAGES="${IMAGES:-img0:1G img1:256M}"

free_port() {
  python3 - <<'EOF'
import socket
for p in range(13300, 14300, 2):
    ok = True
    for q in (p, p + 1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
EOF
}

conf() { echo "$DIR/ceph.conf"; }
ceph_() { timeout 60 ceph -c "$(conf)" "$@"; }

# Start one daemon (it forks itself; its pid file is in DIR/run).
start_daemon() { # KIND ID
  local bin="ceph-$1"
  "$bin" -c "$(conf)" -i "$2" >>"$DIR/log/$1.$2.out" 2>&1 || die "$bin -i $2 did not start (see $DIR/log)"
}

stop_daemon() { # KIND ID
  local pidf="$DIR/run/$1.$2.pid" pid
  [[ -f "$pidf" ]] || return 0
  pid="$(cat "$pidf")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
}

wait_for() { # SECONDS DESCRIPTION COMMAND...
  local secs="$1" what="$2"; shift 2
  for _ in $(seq $((secs * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "timed out after ${secs}s waiting for $what (logs in $DIR/log)"
}

osds_up() { [[ "$(ceph_ osd stat -f json | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_up_osds"])')" -ge "$1" ]]; }
pgs_clean() {
  ceph_ pg stat -f json | python3 -c '
import json, sys
s = json.load(sys.stdin)
s = s.get("pg_summary", s)
n = s.get("num_pgs", 0)
clean = sum(x["num"] for x in s.get("num_pg_by_state", []) if x["name"] == "active+clean")
sys.exit(0 if n > 0 and clean == n else 1)'
}

start() {
  for b in ceph-mon ceph-mgr ceph-osd ceph monmaptool ceph-authtool rbd; do
    command -v "$b" >/dev/null || die "$b not found (apt-get install ceph)"
  done
  [[ "$OSDS" =~ ^[1-3]$ ]] || die "OSDS must be 1, 2 or 3"
  [[ -e "$DIR/ceph.conf" ]] && die "$DIR already holds a cluster (stop or purge it first)"
  mkdir -p "$DIR"/{run,log}
  DIR="$(cd "$DIR" && pwd)"
  local port fsid
  port="${MON_PORT:-$(free_port)}"
  [[ -n "$port" ]] || die "no free port pair for the mon"
  fsid="$(python3 -c 'import uuid; print(uuid.uuid4())')"
  cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]
public network = 127.0.0.0/8
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$cluster-\$name.asok
pid file = $DIR/run/\$type.\$id.pid
log file = $DIR/log/\$name.log
mon data = $DIR/mon.\$id
mgr data = $DIR/mgr.\$id
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = $(numfmt --from=iec "$OSD_BYTES")
osd pool default size = $OSDS
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
auth allow insecure global id reclaim = false
mon osd down out interval = 0
osd max object name len = 256
osd max object namespace len = 64
mgr initial modules =
[mgr]
keyring = $DIR/mgr.\$id/keyring
[osd]
keyring = $DIR/osd.\$id/keyring
osd heartbeat grace = 10
EOF
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]" \
    "$DIR/monmap" >/dev/null
  ceph-mon -c "$(conf)" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" \
    >>"$DIR/log/mkfs.out" 2>&1 || die "ceph-mon --mkfs failed (see $DIR/log/mkfs.out)"
  start_daemon mon a
  wait_for 30 "the mon" ceph_ mon stat
  mkdir -p "$DIR/mgr.x"
  ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    -o "$DIR/mgr.x/keyring" >/dev/null
  start_daemon mgr x
  local i uuid id
  for i in $(seq 0 $((OSDS - 1))); do
    uuid="$(python3 -c 'import uuid; print(uuid.uuid4())')"
    id="$(ceph_ osd new "$uuid")"
    mkdir -p "$DIR/osd.$id"
    ceph_ auth get-or-create "osd.$id" osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
      -o "$DIR/osd.$id/keyring" >/dev/null
    ceph-osd -c "$(conf)" -i "$id" --mkfs --osd-uuid "$uuid" \
      >>"$DIR/log/mkfs.out" 2>&1 || die "ceph-osd --mkfs failed (see $DIR/log/mkfs.out)"
    start_daemon osd "$id"
  done
  wait_for 60 "$OSDS OSD(s) up" osds_up "$OSDS"
  ceph_ osd pool create "$POOL" 8 8 >/dev/null 2>&1
  ceph_ osd pool set "$POOL" size "$OSDS" --yes-i-really-mean-it >/dev/null 2>&1 || true
  timeout 60 rbd -c "$(conf)" pool init "$POOL"
  local spec
  for spec in $IMAGES; do
    timeout 60 rbd -c "$(conf)" create --size "${spec#*:}" "$POOL/${spec%%:*}"
  done
  wait_for 60 "placement groups active+clean" pgs_clean
  log "cluster up: $OSDS OSD(s), pool $POOL, images: $IMAGES"
  echo "$DIR/ceph.conf"
}

stop() {
  [[ -d "$DIR" ]] || return 0
  local f k
  for f in "$DIR"/run/*.pid; do
    [[ -e "$f" ]] || continue
    k="$(basename "$f" .pid)"
    stop_daemon "${k%%.*}" "${k#*.}"
  done
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  purge) stop; rm -rf "$DIR" ;;
  osd-stop) stop_daemon osd "${3:?osd id}" ;;
  osd-start) start_daemon osd "${3:?osd id}" ;;
  osd-pause) kill -STOP "$(cat "$DIR/run/osd.${3:?osd id}.pid")" ;;
  osd-resume) kill -CONT "$(cat "$DIR/run/osd.${3:?osd id}.pid")" ;;
  mon-stop) stop_daemon mon a ;;
  mon-start) start_daemon mon a ;;
  *) die "unknown command $cmd" ;;
esac
