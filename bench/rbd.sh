#!/bin/bash
# rbd.sh: one RBD image, four ways to reach it, in one run (issue 19's benchmark):
#   direct   fio's rbd engine straight to the cluster (the limit), and qemu-img bench through
#            QEMU's own rbd driver (the same load generator as the iSCSI rows)
#   rtgt     an rtgt rbd backstore on the image, over iSCSI
#   tgt      tgt's bs_rbd (package tgt-rbd) on the image, over iSCSI
# Rows: 4 KiB random read QD32 (fio / iscsi-perf -r), 4 KiB write QD32 (fio randwrite / qemu-img
# bench), 128 KiB sequential read and write QD32 (fio / qemu-img bench). For each gateway: its
# CPU microseconds per I/O (utime+stime of the daemon over the run / I/Os). The cluster runs on
# the same machine (scripts/ceph-dev-cluster.sh: one memstore OSD), so the OSD, the gateway and
# the load generator share its cores: the figures compare the gateways with each other and with
# the direct path on this machine, they are not a cluster's capacity.
#
#   cargo build --release -p rtgt && bench/rbd.sh        # SECS per run (default 10), RUNS (1)
# Needs root, ceph (mon, mgr, osd), fio, tgt + tgt-rbd, libiscsi-bin, QEMU 7.2's qemu-img
# (.ci/qemu72.sh unpacks it with its rbd and iscsi drivers).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10} RUNS=${RUNS:-1}
RTGT=$(realpath "${RTGT:-target/release/rtgt}")
QEMU72=${QEMU72:-/tmp/qemu72}
need() { command -v "$1" >/dev/null || { echo "bench: $1 not found: apt-get install -y $2" >&2; exit 1; }; }
need fio fio; need tgtd tgt; need iscsi-perf libiscsi-bin; need ceph-osd ceph; need rbd ceph-common
[ -f /usr/lib/tgt/backing-store/bs_rbd.so ] || { echo "bench: tgt's bs_rbd missing: apt-get install -y tgt-rbd" >&2; exit 1; }
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*rbd' || { echo "bench: this fio has no rbd engine" >&2; exit 1; }
! tgtadm --lld iscsi --op show --mode system >/dev/null 2>&1 || { echo "bench: a tgtd is already running (tgtadm would reach it, not ours): stop it first" >&2; exit 1; }
[ -x "$RTGT" ] || { echo "bench: no rtgt at $RTGT (cargo build --release -p rtgt)" >&2; exit 1; }
bash .ci/qemu72.sh "$QEMU72" >/dev/null
export QEMU_MODULE_DIR=$QEMU72/root/usr/lib/x86_64-linux-gnu/qemu
QIMG=$QEMU72/root/usr/bin/qemu-img

work=$(mktemp -d /tmp/rtgt-rbdbench.XXXXXX)
RPID="" TPID=""
cleanup() {
  set +e   # every step runs, whatever the one before returned
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
  if [ -n "$TPID" ]; then
    # tgtd stays up while it has targets: asked, then made to.
    tgtadm --lld iscsi --op delete --mode system >/dev/null 2>&1
    for _ in $(seq 20); do kill -0 "$TPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null
  fi
  bash scripts/ceph-dev-cluster.sh purge "$work/c" >/dev/null 2>&1
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "bench: starting the cluster" >&2
CONF=$(IMAGES="bench:1G" OSD_BYTES=3G bash scripts/ceph-dev-cluster.sh start "$work/c" | tail -1)
POOL=rbd IMAGE=bench
# fio's rbd engine finds the cluster through the environment
export CEPH_CONF=$CONF
# Filled first, so no path reads holes.
fio --name=fill --ioengine=rbd --clientname=admin --pool=$POOL --rbdname=$IMAGE --rw=write --bs=4M \
  --iodepth=8 --size=1G --direct=1 --output=/dev/null --eta=never >/dev/null 2>&1 \
  || { echo "bench: fio could not fill the image" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- the gateways ----------------------------------------------------------
RPORT=$(port)
cat >"$work/rtgt.toml" <<EOF
[[backstore]]
name = "bench"
type = "rbd"
pool = "$POOL"
image = "$IMAGE"
ceph_conf = "$CONF"

[[target]]
iqn = "iqn.2026-12.org.rtgt:rbdbench"
[[target.tpg]]
tag = 1
portals = ["127.0.0.1:$RPORT"]
mode = "demo"
[[target.tpg.lun]]
lun = 0
backstore = "bench"
EOF
"$RTGT" serve --config "$work/rtgt.toml" --control "$work/ctl.sock" >"$work/rtgt.log" 2>&1 &
RPID=$!
for _ in $(seq 100); do grep -q "listening on" "$work/rtgt.log" && break; sleep 0.1; done
RURL="iscsi://127.0.0.1:$RPORT/iqn.2026-12.org.rtgt:rbdbench/0"

TPORT=$(port)
tgtd -f --iscsi portal=127.0.0.1:$TPORT >"$work/tgt.log" 2>&1 &
TPID=$!
sleep 1
tgtadm --lld iscsi --op new --mode target --tid 1 -T iqn.2026-12.peer:tgt-rbd
tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype rbd \
  --backing-store "$POOL/$IMAGE" --bsopts "conf=$CONF;id=admin"
tgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL
TURL="iscsi://127.0.0.1:$TPORT/iqn.2026-12.peer:tgt-rbd/1"

# --- the load --------------------------------------------------------------
INIT=iqn.2026-12.org.rtgt:rbdbench-init
fio_iops() { # rw bs: IOPS of a SECS s fio rbd run at QD32
  fio --name=b --ioengine=rbd --clientname=admin --pool=$POOL --rbdname=$IMAGE --rw="$1" --bs="$2" \
    --iodepth=32 --size=1G --time_based --runtime="$SECS" --direct=1 --output-format=json --eta=never \
    2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
print(round(j["read"]["iops"] + j["write"]["iops"]))'
}
perf_iops() { # url: iscsi-perf 4 KiB random read QD32, its average
  timeout -s INT "$SECS" iscsi-perf -i "$INIT" -m 32 -b 8 -r "$1" 2>/dev/null \
    | tr '\r' '\n' | sed -n 's/.*iops average \([0-9]*\) .*/\1/p' | tail -1
}
q_iops() { # url-or-rbd-spec size write(0/1): qemu-img bench QD32 requests per second
  local n=$(( 20000 * SECS / 10 )) extra=() secs
  [ "$2" = 4096 ] && n=$(( 100000 * SECS / 10 ))
  [ "$3" = 1 ] && extra=(-w --pattern=0x5a)
  secs=$("$QIMG" bench -f raw -t none -c "$n" -d 32 -s "$2" "${extra[@]}" "$1" 2>/dev/null \
    | sed -n 's/.*Run completed in \([0-9.]*\) seconds.*/\1/p')
  [ -n "$secs" ] && awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f\n", n / s }' || echo 0
}
# run PID CMD...: the command's figure, and the CPU µs per I/O of PID over it
run() {
  local p=$1 t0 t1 v; shift
  t0=$([ -n "$p" ] && cpu_ticks "$p" || echo 0)
  v=$("$@")
  t1=$([ -n "$p" ] && cpu_ticks "$p" || echo 0)
  local ios=$(( v * SECS ))
  # qemu-img bench runs a fixed count: its I/Os are the count, its time its own
  case "$1" in q_iops) ios=$(( $([ "$3" = 4096 ] && echo 100000 || echo 20000) * SECS / 10 )) ;; esac
  awk -v v="$v" -v d=$((t1 - t0)) -v hz="$HZ" -v n="$ios" -v p="$p" \
    'BEGIN { if (p == "" || n == 0) printf "%s\t-\n", v; else printf "%s\t%.1f\n", v, d * 1e6 / hz / n }'
}

RBDSPEC="rbd:$POOL/$IMAGE:conf=$CONF:id=admin"
res=$work/results.tsv
: >"$res"
for r in $(seq "$RUNS"); do
  echo "bench: run $r" >&2
  printf '4k randread\tfio-direct\t%s\n' "$(run "" fio_iops randread 4k)" >>"$res"
  printf '4k randread\trtgt\t%s\n' "$(run "$RPID" perf_iops "$RURL")" >>"$res"
  printf '4k randread\ttgt\t%s\n' "$(run "$TPID" perf_iops "$TURL")" >>"$res"
  printf '4k write\tfio-direct\t%s\n' "$(run "" fio_iops randwrite 4k)" >>"$res"
  printf '4k write\tqemu-direct\t%s\n' "$(run "" q_iops "$RBDSPEC" 4096 1)" >>"$res"
  printf '4k write\trtgt\t%s\n' "$(run "$RPID" q_iops "$RURL" 4096 1)" >>"$res"
  printf '4k write\ttgt\t%s\n' "$(run "$TPID" q_iops "$TURL" 4096 1)" >>"$res"
  for dir in read write; do
    w=$([ $dir = write ] && echo 1 || echo 0)
    printf '128k %s\tfio-direct\t%s\n' $dir "$(run "" fio_iops $dir 128k)" >>"$res"
    printf '128k %s\tqemu-direct\t%s\n' $dir "$(run "" q_iops "$RBDSPEC" 131072 $w)" >>"$res"
    printf '128k %s\trtgt\t%s\n' $dir "$(run "$RPID" q_iops "$RURL" 131072 $w)" >>"$res"
    printf '128k %s\ttgt\t%s\n' $dir "$(run "$TPID" q_iops "$TURL" 131072 $w)" >>"$res"
  done
done
[ -n "${OUT:-}" ] && cp "$res" "$OUT"

python3 - "$res" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    row, who, v, cpu = line.rstrip("\n").split("\t")
    rows.setdefault(row, {}).setdefault(who, []).append((float(v), cpu))
def med(xs):
    return statistics.median(x for x, _ in xs) if xs else None
def cpu(xs):
    c = [float(c) for _, c in xs if c != "-"]
    return f"{statistics.median(c):.0f}" if c else "-"
print("| workload (QD32) | direct: fio rbd | direct: qemu rbd | rtgt | tgt bs_rbd | rtgt/direct | rtgt/tgt | rtgt CPU µs/IO | tgt CPU µs/IO |")
print("|---|---|---|---|---|---|---|---|---|")
for row, d in rows.items():
    f, q, r, t = (med(d.get(k, [])) for k in ("fio-direct", "qemu-direct", "rtgt", "tgt"))
    # rtgt against the direct figure of the same load generator where there is one
    base = q if q else f
    ratio = lambda a, b: f"{a / b:.2f}" if a and b else "-"
    fmt = lambda x: f"{x:.0f}" if x else "-"
    print(f"| {row} | {fmt(f)} | {fmt(q)} | {fmt(r)} | {fmt(t)} | {ratio(r, base)} | {ratio(r, t)} | {cpu(d.get('rtgt', []))} | {cpu(d.get('tgt', []))} |")
print()
print("IOPS (128k rows: requests/s; x 0.131 = MB/s). rtgt/direct: against qemu-img bench on QEMU's rbd")
print("driver where the row has it (the same load generator as the iSCSI rows), else fio's rbd engine.")
EOF
