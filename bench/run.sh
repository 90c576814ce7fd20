#!/bin/bash
# rtgt against tgt (STGT) on the standard workloads (docs/benchmarking.md), both
# measured in the same run on the same machine, on each kind of LUN: medians
# of RUNS runs, the rtgt/tgt ratio per row (higher is better for rtgt) in one
# table with a column per backstore, the raw figures under it, the 128 KiB
# rows in MB/s beside iperf3's loopback figure of the same run, and the
# resident memory of each daemon (idle, peak, under SESSIONS sessions).
#
#   bench/run.sh                      # builds rtgt (release) unless RTGT is given
#   RUNS=5 LUN=ram bench/run.sh
#   RUNS=1 SECS=2 SESSIONS=20 RTGT=/path/to/rtgt bench/run.sh   # smoke test
#
# Environment:
#   RUNS      runs per workload and target (default 3)
#   LUN       all (default) = ram, shm and blockio one after the other; or
#             one of them:
#               ram     rtgt: its RAM backstore (1 GiB, prefilled through
#                       iSCSI before the runs). tgt: its file LUN (bstype
#                       rdwr) on a 1 GiB file in /dev/shm: tgt has no RAM
#                       backstore, and a tmpfs file is the nearest it has.
#               shm     both: fileio (rtgt write_back, tgt bstype rdwr) on
#                       a 1 GiB file of their own in /dev/shm.
#               blockio both bypass the page cache: rtgt's blockio (O_DIRECT)
#                       on a loop device over a 1 GiB /dev/shm file; tgt gets
#                       its OWN loop device over its own /dev/shm file, with
#                       --bstype rdwr --bsoflags direct (O_DIRECT). Needs root.
#   SECS      seconds per timed run (default 10): iscsi-perf runs and iperf3
#             last this long; qemu-img bench request counts scale with it
#             (200000 4 KiB requests at QD32 for SECS=10). SECS=2, the
#             least, for a smoke test.
#   SESSIONS  concurrent sessions of the memory test (default 100)
#   RTGT      rtgt binary (default: cargo build --release, target/release/rtgt)
#   QEMU72    where .ci/qemu72.sh unpacks qemu-img 7.2 (default /tmp/qemu72)
#   OUT       if set, the raw results (TSV) are copied there
#
# What is measured, per backstore:
#   - The single-session rows with each target pinned to CPU 1 and the load
#     generator on CPU 0. rtgt runs here as `--threads 1` (what it picks by
#     itself when pinned to one CPU: one current-thread runtime).
#   - The same 128 KiB rows with HeaderDigest=CRC32C. Asking for it:
#       qemu-img: --image-opts ...,file.header-digest=crc32c (QEMU's iscsi
#                 driver option; it offers CRC32C only).
#       iscsi-perf: its ?header_digest=crc32c URL argument is overwritten by
#                 iscsi-perf itself (it calls iscsi_set_header_digest(
#                 NONE_CRC32C) after parsing the URL), so bench/hdigest.c, an
#                 LD_PRELOAD shim built here with gcc, makes that call ask
#                 for CRC32C only. Without gcc that row is skipped.
#       tgt:      answers HeaderDigest=None to an initiator that offers only
#                 CRC32C unless the target is set to CRC32C (tgtadm --op
#                 update -n HeaderDigest -v CRC32C); it is set so for the
#                 digest rows only and back to None after them, as its
#                 CRC32C setting forces digests on every login.
#     Every digest run checks the target's login reply (LIBISCSI_DEBUG=6);
#     a run whose session came up without the digest counts as "nodigest",
#     not as a figure. DataDigest is NOT measured: Debian 12's libiscsi
#     (1.19, used by iscsi-perf and by QEMU's driver) has no data digest and
#     always offers DataDigest=None; no other initiator is at hand here (no
#     kernel iSCSI initiator in this container).
#   - Two sessions on two cores: the targets NOT pinned (tgt's threads are
#     unpinned for these rows with taskset -a), two load generators at once,
#     one pinned to each CPU: aggregate 4 KiB random read QD32 (iscsi-perf,
#     the sum of the two averages) and 4 KiB write QD32 (qemu-img bench, each
#     half the single-session count, at offsets 0 and 512 MiB: all requests /
#     the longer of the two times). Run against rtgt with its default
#     threads (one per CPU, unpinned), tgt, and rtgt --threads 1 pinned to
#     CPU 1, the one-core figure: the table gives rtgt(2 cores)/tgt, the
#     scaling rtgt(2 cores)/rtgt(1 core), and rtgt(1 core)/tgt.
#   - iperf3, one stream over loopback, server on CPU 1 (as the targets),
#     client on CPU 0, SECS seconds, plain and with sendfile (-Z), once per
#     run per backstore: the 128 KiB rows are printed in MB/s (10^6 bytes/s)
#     and as a percentage of its plain figure.
#   - Memory of each daemon (/proc/PID/status): idle VmRSS right after start
#     with the LUN configured; peak VmHWM after all the rows; the highest
#     VmRSS seen while SESSIONS iscsi-perf processes (one session each, 4 KiB
#     random reads at QD32, SECS seconds, distinct initiator names) run
#     against it, and VmHWM after them. The RAM LUN's RSS includes its data:
#     1 GiB once prefilled (its idle figure is taken before the prefill); the
#     report subtracts that 1 GiB from rtgt's later ram figures for the
#     rtgt/tgt comparison and says so.
#
# Honest practices kept: the order of the targets rotates from run to run,
# so drift on the machine hits all alike; writes carry a non-zero pattern
# (qemu-img bench writes zeros by default, which a target could store as
# holes); both sides' LUNs are fully written before the runs, so neither
# reads holes; the figure is the median of RUNS runs, raw figures below it.
#
# Run time at SECS=10: about 4 minutes per backstore and run on a busy
# 2-core machine, so 30-40 minutes for the default (all backstores, RUNS=3);
# RUNS=1 SECS=2 takes about 3 minutes for all three.
#
# Needs root (tgtd, losetup), tgt, libiscsi-bin, iperf3, util-linux
# (taskset, losetup), iproute2 (ss), python3; gcc for the iscsi-perf digest
# row.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
LUN=${LUN:-all}
SECS=${SECS:-10}
SESSIONS=${SESSIONS:-100}
QEMU72=${QEMU72:-/tmp/qemu72}
INIT=iqn.2026-11.org.rtgt:bench-init
TGT_IQN=iqn.2026-11.peer:tgt
RTGT_IQN=iqn.2026-11.org.rtgt:bench

for v in RUNS SECS SESSIONS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v must be a positive integer" >&2; exit 2; }
done
[ "$SECS" -ge 2 ] || { echo "bench: SECS must be at least 2 (iscsi-perf prints its average once a second)" >&2; exit 2; }
case $LUN in
    all) LUNS=(ram shm blockio) ;;
    ram | shm | blockio) LUNS=("$LUN") ;;
    *) echo "bench: LUN must be all, ram, shm or blockio" >&2; exit 2 ;;
esac

need() { command -v "$1" >/dev/null || { echo "bench: $1 not found: apt-get install -y $2" >&2; exit 1; }; }
need tgtd tgt; need tgtadm tgt; need iscsi-perf libiscsi-bin; need taskset util-linux; need losetup mount
need python3 python3; need iperf3 iperf3; need ss iproute2
bash .ci/qemu72.sh "$QEMU72" >/dev/null
export QEMU_MODULE_DIR=$QEMU72/root/usr/lib/x86_64-linux-gnu/qemu
QIMG=$QEMU72/root/usr/bin/qemu-img

# qemu-img bench request counts for SECS (fixed counts, so the slower target
# runs longer; at SECS=10: 200000 4 KiB at QD32, 20000 at QD1 and of 128 KiB)
scale() { local n=$(($1 * SECS / 10)); [ "$n" -ge 1000 ] || n=1000; echo "$n"; }
C4K=$(scale 200000); CQD1=$(scale 20000); C128K=$(scale 20000)

# Targets on CPU 1, load generators on CPU 0, for steadier figures; the
# two-session rows put a second generator on CPU 1 and unpin the targets.
ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then
    TGT_CPU=(taskset -c 1); GEN_CPU=(taskset -c 0); GEN2_CPU=(taskset -c 1); ALL_CPUS=0-$((ncpu - 1))
else
    TGT_CPU=(); GEN_CPU=(); GEN2_CPU=(); ALL_CPUS=''
    echo "bench: one CPU only, not pinning; the two-core rows mean nothing" >&2
fi

work=$(mktemp -d /dev/shm/rtgt-bench.XXXXXX)   # LUN files live in RAM
RES=$work/results.tsv
declare -A pid=() url=()   # daemon (r1, r2, tgt) -> its pid, its LUN's URL
loops=()
failed=''
stop_daemons() {
    local d
    for d in r1 r2; do
        if [ -n "${pid[$d]:-}" ]; then kill -TERM "${pid[$d]}" 2>/dev/null || true; fi
    done
    # tgtd does not exit on SIGTERM while it has targets
    if [ -n "${pid[tgt]:-}" ]; then kill -KILL "${pid[tgt]}" 2>/dev/null || true; fi
    for d in r1 r2 tgt; do
        if [ -n "${pid[$d]:-}" ]; then wait "${pid[$d]}" 2>/dev/null || true; fi
    done
    pid=(); url=()
    for d in "${loops[@]}"; do losetup -d "$d" 2>/dev/null || true; done
    loops=()
}
cleanup() { stop_daemons; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
listening() { for _ in $(seq 100); do [ -n "$(ss -Hltn "sport = :$1")" ] && return 0; sleep 0.1; done; return 1; }
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }   # pid, VmRSS|VmHWM
record() { local IFS=$'\t'; echo "$*" >>"$RES"; }   # kind lun row target run value

if [ -z "${RTGT:-}" ]; then
    cargo build --release -q -p rtgt 2>"$work/build.log" || { echo "bench: rtgt build failed:"; tail -20 "$work/build.log"; exit 1; }
    RTGT=target/release/rtgt
fi
shim=$work/hdigest.so
if ! gcc -O2 -shared -fPIC -o "$shim" bench/hdigest.c -ldl 2>"$work/gcc.log"; then
    echo "bench: cannot build bench/hdigest.c (gcc): no iscsi-perf header digest row" >&2
    shim=''
fi

# ---- tgt: tgtd pinned, on its own port and control socket
start_tgt() {   # kind
    local port ctl lun=(-b "$work/tgt.img")
    head -c 1G /dev/zero >"$work/tgt.img"   # allocated, like a disk in use
    if [ "$1" = blockio ]; then
        local dev
        dev=$(losetup --find --show "$work/tgt.img") || { echo "bench: losetup failed (needs root)" >&2; return 1; }
        loops+=("$dev")
        lun=(--bstype rdwr --bsoflags direct -b "$dev")
    fi
    port=$(free_port)
    ctl=$((port % 10000 + 1000))   # its own management socket, beside any other tgtd
    "${TGT_CPU[@]}" tgtd -f -C "$ctl" --iscsi "portal=127.0.0.1:$port" >"$work/tgtd.log" 2>&1 &
    pid[tgt]=$!
    wait_port "$port" || { echo "bench: tgtd did not start:"; cat "$work/tgtd.log"; return 1; } >&2
    tgtadm=(tgtadm -C "$ctl" --lld iscsi)
    if ! { "${tgtadm[@]}" --op new --mode target --tid 1 -T "$TGT_IQN" &&
           "${tgtadm[@]}" --op new --mode logicalunit --tid 1 --lun 1 "${lun[@]}" &&
           "${tgtadm[@]}" --op bind --mode target --tid 1 -I ALL; }; then
        echo "bench: tgtadm failed" >&2; return 1
    fi
    url[tgt]=iscsi://127.0.0.1:$port/$TGT_IQN/1   # tgt's LUN 0 is its controller
}
tgt_digest() { "${tgtadm[@]}" --op update --mode target --tid 1 -n HeaderDigest -v "$1"; }   # CRC32C|None
tgt_cpus() {   # CPU list: move all of tgtd's threads there
    if [ -n "$ALL_CPUS" ] && [ -n "${pid[tgt]:-}" ]; then taskset -a -p -c "$1" "${pid[tgt]}" >/dev/null; fi
}

# ---- rtgt: the same kind of LUN on an ephemeral port
start_rtgt() {   # name, backstore TOML, pinned|unpinned, more rtgt options
    local name=$1 store=$2 cpu=() port=''
    [ "$3" = pinned ] && cpu=("${TGT_CPU[@]}")
    cat >"$work/$name.toml" <<EOF
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
    "${cpu[@]}" "$RTGT" serve --config "$work/$name.toml" --listen 127.0.0.1:0 "${@:4}" >"$work/$name.out" 2>"$work/$name.err" &
    pid[$name]=$!
    for _ in $(seq 300); do
        port=$(sed -n 's/^rtgt: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/$name.out" | head -1)
        [ -n "$port" ] && break
        kill -0 "${pid[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        { echo "bench: rtgt ($name) did not start (no listening line); stderr:"; tail -20 "$work/$name.err"; } >&2
        kill -KILL "${pid[$name]}" 2>/dev/null || true
        wait "${pid[$name]}" 2>/dev/null || true
        unset "pid[$name]"
        failed=1
        return 0
    fi
    url[$name]=iscsi://127.0.0.1:$port/$RTGT_IQN/0
}

# ---- one kind of LUN: tgt, rtgt --threads 1 pinned (r1), rtgt unpinned (r2)
setup() {   # kind
    local store d v
    start_tgt "$1" || exit 1
    case $1 in
        ram) store='type = "ramdisk"
size = "1G"
block_size = 512' ;;
        shm) head -c 1G /dev/zero >"$work/rtgt.img"
             store="type = \"fileio\"
path = \"$work/rtgt.img\"
size = \"1G\"
block_size = 512
write_back = true" ;;
        blockio) head -c 1G /dev/zero >"$work/rtgt.img"
             d=$(losetup --find --show "$work/rtgt.img") || { echo "bench: losetup failed (needs root)" >&2; exit 1; }
             loops+=("$d")
             store="type = \"blockio\"
path = \"$d\"" ;;
    esac
    # r1 and r2 share the file or loop device (one of them at a time does
    # I/O); each RAM backstore is its own.
    start_rtgt r1 "$store" pinned --threads 1
    start_rtgt r2 "$store" unpinned
    for d in r1 r2 tgt; do
        if [ -n "${pid[$d]:-}" ]; then record mem "$1" idle_rss "$d" - "$(kb "${pid[$d]}" VmRSS)"; fi
    done
    if [ "$1" = ram ]; then   # write all of it, so that no read finds a hole
        for d in r1 r2; do
            [ -n "${url[$d]:-}" ] || continue
            v=$("$QIMG" bench -f raw -t none -w --pattern=90 -c 8192 -d 16 -s 128k "${url[$d]}" 2>&1 | qsecs) || true
            [ -n "$v" ] || echo "bench: prefilling rtgt's RAM LUN ($d) failed" >&2
        done
    fi
}
teardown() {   # kind
    local d rc
    for d in r1 r2; do
        [ -n "${pid[$d]:-}" ] || continue
        kill -TERM "${pid[$d]}" 2>/dev/null || true
        rc=0; wait "${pid[$d]}" || rc=$?
        unset "pid[$d]"
        [ "$rc" = 0 ] || { echo "bench: WARNING: rtgt ($d, $1 LUN) exited $rc on SIGTERM" >&2; record warn "$1" sigterm "$d" - "$rc"; failed=1; }
    done
    stop_daemons
    rm -f "$work/tgt.img" "$work/rtgt.img"
}

# ---- load generators; each prints one number (IOPS), or a word on failure
perf_avg() { tr '\r' '\n' | sed -n 's/.*iops average \([0-9]*\) .*/\1/p' | tail -1; }
qsecs() { sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p'; }
rate() { [ -n "$2" ] && awk -v c="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f\n", c / s }'; }
digest_ok() {   # libiscsi log, figure: the figure if the target agreed to HeaderDigest=CRC32C
    if grep -q 'TargetLoginReply: HeaderDigest=CRC32C' "$1"; then echo "$2"; else echo nodigest; fi
}
image_opts() {   # iscsi://portal/iqn/lun, extra options: the same as --image-opts
    local rest=${1#iscsi://} portal iqn
    portal=${rest%%/*}; rest=${rest#*/}; iqn=${rest%/*}
    echo "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=$portal,file.target=$iqn,file.lun=${rest##*/}$2"
}

perf() {   # url, iscsi-perf options: average IOPS of a SECS s run
    timeout -s INT "$SECS" "${GEN_CPU[@]}" iscsi-perf -i "$INIT" "${@:2}" "$1" 2>/dev/null | perf_avg || true
}
perf_hd() {   # the same with HeaderDigest=CRC32C
    [ -n "$shim" ] || { echo noshim; return; }
    local v
    v=$(LD_PRELOAD=$shim LIBISCSI_DEBUG=6 timeout -s INT "$SECS" "${GEN_CPU[@]}" iscsi-perf -i "$INIT" "${@:2}" "$1" 2>"$work/hd.log" | perf_avg) || true
    digest_ok "$work/hd.log" "$v"
}
qbench() {   # url, -c N, more qemu-img bench options: requests per second
    local secs
    secs=$("${GEN_CPU[@]}" "$QIMG" bench -f raw -t none "${@:2}" "$1" 2>/dev/null | qsecs) || true
    rate "$3" "$secs"
}
qbench_hd() {   # the same with HeaderDigest=CRC32C
    local secs
    secs=$(LIBISCSI_DEBUG=6 "${GEN_CPU[@]}" "$QIMG" bench -t none "${@:2}" --image-opts "$(image_opts "$1" ,file.header-digest=crc32c)" 2>"$work/hd.log" | qsecs) || true
    digest_ok "$work/hd.log" "$(rate "$3" "$secs")"
}
perf2() {   # two iscsi-perf at once, one per CPU: the sum of their averages
    local a b x y
    timeout -s INT "$SECS" "${GEN_CPU[@]}" iscsi-perf -i "$INIT-a" "${@:2}" "$1" >"$work/p2a" 2>/dev/null & a=$!
    timeout -s INT "$SECS" "${GEN2_CPU[@]}" iscsi-perf -i "$INIT-b" "${@:2}" "$1" >"$work/p2b" 2>/dev/null & b=$!
    wait "$a" || true; wait "$b" || true
    x=$(perf_avg <"$work/p2a"); y=$(perf_avg <"$work/p2b")
    [ -n "$x" ] && [ -n "$y" ] && echo $((x + y))
}
qbench2() {   # two qemu-img bench at once, one per CPU: all requests / the longer time
    local a b x y
    "${GEN_CPU[@]}" "$QIMG" bench -f raw -t none "${@:2}" -o 0 "$1" >"$work/q2a" 2>/dev/null & a=$!
    "${GEN2_CPU[@]}" "$QIMG" bench -f raw -t none "${@:2}" -o 512M "$1" >"$work/q2b" 2>/dev/null & b=$!
    wait "$a" || true; wait "$b" || true
    x=$(qsecs <"$work/q2a"); y=$(qsecs <"$work/q2b")
    [ -n "$x" ] && [ -n "$y" ] && awk -v c="$3" -v x="$x" -v y="$y" 'BEGIN { m = x > y ? x : y; if (m > 0) printf "%.0f\n", 2 * c / m }'
}
iperf() {   # more iperf3 client options: bits/s of one stream over loopback
    local port spid json
    port=$(free_port)
    "${TGT_CPU[@]}" iperf3 -s -1 -p "$port" >/dev/null 2>&1 & spid=$!
    listening "$port" || true
    json=$("${GEN_CPU[@]}" iperf3 -c 127.0.0.1 -p "$port" -t "$SECS" -J "$@" 2>/dev/null) || true
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
    python3 -c 'import json, sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))' <<<"$json" 2>/dev/null || true
}

# id | name | unit | group | command
#   group a: one session, targets on CPU 1 (r1 and tgt); hd: the same with
#   HeaderDigest=CRC32C; b: two sessions, targets unpinned (r2, r1, tgt).
#   unit MB/s: 128 KiB requests, shown as MB/s (the figure is IOPS).
# Writes carry a non-zero pattern: qemu-img bench writes zeros by default,
# which a target could store as holes and so look faster than it is.
ROWS=(
    "p4k|iscsi-perf 4k rand read QD32|IOPS|a|perf URL -m 32 -b 8 -r"
    "p128k|iscsi-perf 128k read QD16|MB/s|a|perf URL -m 16 -b 256"
    "q4kr|qemu-img 4k read QD32|IOPS|a|qbench URL -c $C4K -d 32 -s 4k -S 8192"
    "q4kw|qemu-img 4k write QD32|IOPS|a|qbench URL -c $C4K -d 32 -s 4k -S 8192 -w --pattern=165"
    "q4kr1|qemu-img 4k read QD1|IOPS|a|qbench URL -c $CQD1 -d 1 -s 4k"
    "q4kw1|qemu-img 4k write QD1|IOPS|a|qbench URL -c $CQD1 -d 1 -s 4k -w --pattern=165"
    "q128kr|qemu-img 128k read QD16|MB/s|a|qbench URL -c $C128K -d 16 -s 128k"
    "q128kw|qemu-img 128k write QD16|MB/s|a|qbench URL -c $C128K -d 16 -s 128k -w --pattern=165"
    "hd-p128k|iscsi-perf 128k read QD16 +HD|MB/s|hd|perf_hd URL -m 16 -b 256"
    "hd-q128kr|qemu-img 128k read QD16 +HD|MB/s|hd|qbench_hd URL -c $C128K -d 16 -s 128k"
    "hd-q128kw|qemu-img 128k write QD16 +HD|MB/s|hd|qbench_hd URL -c $C128K -d 16 -s 128k -w --pattern=165"
    "2-p4k|2x iscsi-perf 4k rand read QD32|IOPS|b|perf2 URL -m 32 -b 8 -r"
    "2-q4kw|2x qemu-img 4k write QD32|IOPS|b|qbench2 URL -c $((C4K / 2)) -d 32 -s 4k -S 8192 -w --pattern=165"
)
for row in "${ROWS[@]}"; do
    IFS='|' read -r id name unit group _ <<<"$row"
    record rowdef - "$id" "$group" "$unit" "$name"
done

run_row() {   # lun, run, row, daemons in order
    local id group cmd d v
    IFS='|' read -r id _ _ group cmd <<<"$3"
    for d in "${@:4}"; do
        [ -n "${url[$d]:-}" ] || continue
        if [ "$group" = hd ] && [ "$d" = tgt ]; then tgt_digest CRC32C; fi
        # shellcheck disable=SC2086 # the row's command is words
        v=$(${cmd/URL/${url[$d]}}) || v=''
        if [ "$group" = hd ] && [ "$d" = tgt ]; then tgt_digest None; fi
        record io "$1" "$id" "$d" "$2" "${v:-fail}"
    done
}

sessions() {   # lun, daemon: SESSIONS iscsi-perf sessions at QD32 against it
    local k ps=() max=0 r end ok
    for k in $(seq "$SESSIONS"); do
        timeout -s INT "$SECS" iscsi-perf -i "$INIT-s$k" -m 32 -b 8 -r "${url[$2]}" >"$work/s.$k" 2>&1 &
        ps+=($!)
    done
    end=$((SECONDS + SECS))
    while [ "$SECONDS" -lt "$end" ]; do
        r=$(kb "${pid[$2]}" VmRSS)
        [ "${r:-0}" -gt "$max" ] && max=$r
        sleep 0.5
    done
    for k in "${ps[@]}"; do wait "$k" || true; done
    r=$(kb "${pid[$2]}" VmRSS); [ "${r:-0}" -gt "$max" ] && max=$r
    ok=$(grep -l 'iops average' "$work"/s.* | wc -l) || true
    rm -f "$work"/s.*
    record mem "$1" sessions_rss "$2" - "$max"
    record mem "$1" sessions_hwm "$2" - "$(kb "${pid[$2]}" VmHWM)"
    record mem "$1" sessions_ok "$2" - "$ok"
}

start=$SECONDS
for lun in "${LUNS[@]}"; do
    echo "bench: $lun LUN: tgt, rtgt --threads 1 on CPU 1, rtgt unpinned" >&2
    setup "$lun"
    for run in $(seq "$RUNS"); do
        echo "bench: $lun LUN, run $run/$RUNS ($((SECONDS - start)) s so far)" >&2
        record iperf "$lun" plain - "$run" "$(iperf)"
        record iperf "$lun" sendfile - "$run" "$(iperf -Z)"
        # rotate which target goes first, so drift on the machine hits all alike
        if [ $((run % 2)) = 1 ]; then order=(r1 tgt); else order=(tgt r1); fi
        three=(r2 r1 tgt); k=$(((run - 1) % 3))
        order3=("${three[@]:k}" "${three[@]:0:k}")
        for row in "${ROWS[@]}"; do
            IFS='|' read -r _ _ _ group _ <<<"$row"
            [ "$group" = b ] || run_row "$lun" "$run" "$row" "${order[@]}"
        done
        tgt_cpus "$ALL_CPUS"   # two-core rows: no target pinned
        for row in "${ROWS[@]}"; do
            IFS='|' read -r _ _ _ group _ <<<"$row"
            [ "$group" != b ] || run_row "$lun" "$run" "$row" "${order3[@]}"
        done
        tgt_cpus 1
    done
    for d in r1 r2 tgt; do
        if [ -n "${pid[$d]:-}" ]; then record mem "$lun" rows_hwm "$d" - "$(kb "${pid[$d]}" VmHWM)"; fi
    done
    echo "bench: $lun LUN: $SESSIONS sessions against each daemon" >&2
    for d in r1 r2 tgt; do
        if [ -n "${url[$d]:-}" ]; then sessions "$lun" "$d"; fi
    done
    teardown "$lun"
done
echo "bench: done in $((SECONDS - start)) s" >&2

[ -z "${OUT:-}" ] || cp "$RES" "$OUT"
echo
python3 bench/report.py "$RES" "$RUNS" "$SECS" "$SESSIONS"

if [ -n "$failed" ]; then
    echo "WARNING: an rtgt did not start or did not exit cleanly: see above; its columns are empty"
    exit 1
fi
