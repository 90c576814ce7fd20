#!/bin/bash
# rtgt against tgt (STGT) on the workloads of shared/BENCHMARKS.md, both
# measured in the same run on the same machine: medians of RUNS runs, the
# rtgt/tgt ratio per row (higher is better for rtgt), the raw figures, and the
# peak resident memory (VmHWM) of each daemon.
#
#   bench/run.sh                 # builds rtgt (release) unless RTGT is given
#   RUNS=5 LUN=ram bench/run.sh
#
# Environment:
#   RUNS    runs per workload and target (default 3)
#   LUN     rtgt's LUN: shm = fileio on a 1 GiB file in /dev/shm, the same
#           kind as tgt's (default); ram = rtgt's RAM backstore; blockio =
#           blockio on a loop device over a 1 GiB file in /dev/shm (root)
#   RTGT    rtgt binary (default: cargo build --release, target/release/rtgt)
#   QEMU72  where .ci/qemu72.sh unpacks qemu-img 7.2 (default /tmp/qemu72)
# Needs root (tgtd), tgt, libiscsi-bin, util-linux (taskset), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
LUN=${LUN:-shm}
QEMU72=${QEMU72:-/tmp/qemu72}
INIT=iqn.2026-11.org.rtgt:bench-init
TGT_IQN=iqn.2026-11.peer:tgt
RTGT_IQN=iqn.2026-11.org.rtgt:bench

need() { command -v "$1" >/dev/null || { echo "bench: $1 not found: apt-get install -y $2" >&2; exit 1; }; }
need tgtd tgt; need tgtadm tgt; need iscsi-perf libiscsi-bin; need taskset util-linux; need python3 python3
bash .ci/qemu72.sh "$QEMU72" >/dev/null
export QEMU_MODULE_DIR=$QEMU72/root/usr/lib/x86_64-linux-gnu/qemu
QIMG=$QEMU72/root/usr/bin/qemu-img

# Targets on CPU 1, load generators on CPU 0, for steadier figures.
if [ "$(nproc)" -ge 2 ]; then TGT_CPU=(taskset -c 1); GEN_CPU=(taskset -c 0)
else TGT_CPU=(); GEN_CPU=(); echo "bench: one CPU only, not pinning" >&2; fi

work=$(mktemp -d /dev/shm/rtgt-bench.XXXXXX)   # LUN files live in RAM
tgt_pid='' rtgt_pid='' rtgt_url='' loopdev=''
cleanup() {
    if [ -n "$rtgt_pid" ]; then kill -TERM "$rtgt_pid" 2>/dev/null || true; fi
    # tgtd does not exit on SIGTERM while it has targets
    if [ -n "$tgt_pid" ]; then kill -KILL "$tgt_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [ -n "$loopdev" ]; then losetup -d "$loopdev" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
hwm() { awk '/^VmHWM/ {print $2 " kB"}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# ---- tgt: tgtd on its own port and control socket, a 1 GiB file LUN in /dev/shm
tgt_port=$(free_port)
tgt_ctl=$((tgt_port % 10000 + 1000))   # its own management socket, beside any other tgtd
head -c 1G /dev/zero >"$work/tgt.img"   # allocated, like a disk in use
"${TGT_CPU[@]}" tgtd -f -C "$tgt_ctl" --iscsi "portal=127.0.0.1:$tgt_port" >"$work/tgtd.log" 2>&1 &
tgt_pid=$!
wait_port "$tgt_port" || { echo "bench: tgtd did not start:"; cat "$work/tgtd.log"; exit 1; }
tgtadm=(tgtadm -C "$tgt_ctl" --lld iscsi)
"${tgtadm[@]}" --op new --mode target --tid 1 -T "$TGT_IQN"
"${tgtadm[@]}" --op new --mode logicalunit --tid 1 --lun 1 -b "$work/tgt.img"
"${tgtadm[@]}" --op bind --mode target --tid 1 -I ALL
tgt_url=iscsi://127.0.0.1:$tgt_port/$TGT_IQN/1   # tgt's LUN 0 is its controller

# ---- rtgt: the same kind of LUN on an ephemeral port
start_rtgt() {
    if [ -z "${RTGT:-}" ]; then
        cargo build --release -q -p rtgt 2>"$work/build.log" || { echo "rtgt build failed:"; tail -20 "$work/build.log"; return 1; }
        RTGT=target/release/rtgt
    fi
    if [ "$LUN" = ram ]; then
        store='type = "ramdisk"
size = "1G"
block_size = 512'
    elif [ "$LUN" = blockio ]; then
        head -c 1G /dev/zero >"$work/rtgt.img"
        loopdev=$(losetup --find --show "$work/rtgt.img") || { echo "bench: losetup failed (needs root)"; return 1; }
        store="type = \"blockio\"
path = \"$loopdev\""
    else
        head -c 1G /dev/zero >"$work/rtgt.img"
        store="type = \"fileio\"
path = \"$work/rtgt.img\"
size = \"1G\"
block_size = 512
write_back = true"
    fi
    cat >"$work/rtgt.toml" <<EOF
[[backstore]]
name = "lun0"
$store

[[target]]
iqn = "$RTGT_IQN"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "lun0"
EOF
    "${TGT_CPU[@]}" "$RTGT" serve --config "$work/rtgt.toml" --listen 127.0.0.1:0 >"$work/rtgt.out" 2>"$work/rtgt.err" &
    rtgt_pid=$!
    local port=''
    for _ in $(seq 300); do
        port=$(sed -n 's/^rtgt: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/rtgt.out" | head -1)
        [ -n "$port" ] && break
        kill -0 "$rtgt_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "rtgt did not start (no listening line); stderr:"; tail -20 "$work/rtgt.err"
        kill -KILL "$rtgt_pid" 2>/dev/null || true; rtgt_pid=''
        return 1
    fi
    rtgt_url=iscsi://127.0.0.1:$port/$RTGT_IQN/0
}
start_rtgt || echo "bench: RTGT FAILED TO START: measuring tgt only" >&2

# ---- load generators; each prints one number (IOPS), or nothing on failure
perf() {   # url, iscsi-perf options: average IOPS of a 10 s run
    timeout -s INT 10 "${GEN_CPU[@]}" iscsi-perf -i "$INIT" "${@:2}" "$1" 2>/dev/null | tr '\r' '\n' |
        sed -n 's/.*iops average \([0-9]*\) .*/\1/p' | tail -1 || true
}
qbench() { # url, qemu-img bench options: requests / seconds
    local count=$3 secs
    secs=$("${GEN_CPU[@]}" "$QIMG" bench -f raw -t none "${@:2}" "$1" 2>/dev/null |
        sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p') || true
    [ -n "$secs" ] && awk -v c="$count" -v s="$secs" 'BEGIN { printf "%.0f\n", c / s }'
}

# name | unit (MiB/s rows are 128 KiB requests) | command
# Writes carry a non-zero pattern: qemu-img bench writes zeros by default,
# which a target could store as holes and so look faster than it is.
ROWS=(
    "iscsi-perf 4k rand read QD32|IOPS|perf URL -m 32 -b 8 -r"
    "iscsi-perf 128k read QD16|MiB/s|perf URL -m 16 -b 256"
    "qemu-img 4k read QD32|IOPS|qbench URL -c 200000 -d 32 -s 4k -S 8192"
    "qemu-img 4k write QD32|IOPS|qbench URL -c 200000 -d 32 -s 4k -S 8192 -w --pattern=165"
    "qemu-img 4k read QD1|IOPS|qbench URL -c 20000 -d 1 -s 4k"
    "qemu-img 4k write QD1|IOPS|qbench URL -c 20000 -d 1 -s 4k -w --pattern=165"
    "qemu-img 128k read QD16|MiB/s|qbench URL -c 20000 -d 16 -s 128k"
    "qemu-img 128k write QD16|MiB/s|qbench URL -c 20000 -d 16 -s 128k -w --pattern=165"
)

declare -A raw   # "row,target" -> space-separated IOPS of each run
for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS ..." >&2
    # alternate which target goes first, so drift on the machine hits both alike
    if [ $((run % 2)) = 1 ]; then order="rtgt tgt"; else order="tgt rtgt"; fi
    for i in "${!ROWS[@]}"; do
        IFS='|' read -r name unit cmd <<<"${ROWS[$i]}"
        for t in $order; do
            url=$([ "$t" = tgt ] && echo "$tgt_url" || echo "$rtgt_url")
            [ -z "$url" ] && continue
            v=$(${cmd/URL/$url}) || v=''
            raw[$i,$t]="${raw[$i,$t]:-} ${v:-fail}"
        done
    done
done

median() { tr ' ' '\n' | { grep -E '^[0-9]+$' || true; } | sort -n | awk '{a[NR]=$1} END { if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2) }'; }
show() {   # IOPS -> the row's unit
    [ -z "$1" ] && { echo "-"; return; }
    if [ "$2" = MiB/s ]; then awk -v v="$1" 'BEGIN { printf "%.0f", v * 128 / 1024 }'; else echo "$1"; fi
}

echo
echo "rtgt ($LUN LUN) vs tgt (/dev/shm file LUN), median of $RUNS runs; targets on CPU 1, load on CPU 0"
printf '%-30s %-6s %10s %10s %8s\n' workload unit rtgt tgt rtgt/tgt
for i in "${!ROWS[@]}"; do
    IFS='|' read -r name unit _ <<<"${ROWS[$i]}"
    r=$(echo "${raw[$i,rtgt]:-}" | median); g=$(echo "${raw[$i,tgt]:-}" | median)
    ratio=-
    [ -n "$r" ] && [ -n "$g" ] && ratio=$(awk -v a="$r" -v b="$g" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
    printf '%-30s %-6s %10s %10s %8s\n' "$name" "$unit" "$(show "$r" "$unit")" "$(show "$g" "$unit")" "$ratio"
done
echo
echo "peak RSS (VmHWM): rtgt $([ -n "$rtgt_pid" ] && hwm "$rtgt_pid" || echo -), tgt $(hwm "$tgt_pid")"
echo
echo "raw IOPS per run:"
for i in "${!ROWS[@]}"; do
    IFS='|' read -r name _ _ <<<"${ROWS[$i]}"
    printf '  %-30s rtgt:%s  tgt:%s\n' "$name" "${raw[$i,rtgt]:- -}" "${raw[$i,tgt]:- -}"
done

if [ -n "$rtgt_pid" ]; then
    kill -TERM "$rtgt_pid"
    rc=0; wait "$rtgt_pid" || rc=$?
    rtgt_pid=''
    [ "$rc" = 0 ] || echo "WARNING: rtgt exited $rc on SIGTERM"
else
    echo "WARNING: rtgt did not run; its column is empty"
    exit 1
fi
