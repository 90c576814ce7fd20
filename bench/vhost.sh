#!/bin/bash
# vhost.sh: the guest's view of three ways to give a VM a disk, in one run, on the same kind of
# medium (a loop device over a /dev/shm file each), with host CPU per I/O for each:
#   vhost   rtgt's vhost-user-scsi controller (blockio on loop A)
#   qemu    QEMU's own in-process virtio-scsi (scsi-hd, aio=io_uring, cache=none, on loop B)
#   iscsi   the same rtgt LU as `vhost`, over iSCSI from the guest's open-iscsi
# fio in the guest: 4k randread and randwrite at QD32 with numjobs = vCPUs, 128k sequential
# read and write; the host samples the CPU time of the rtgt and QEMU processes around each run
# (QEMU's includes the vCPUs running the guest's fio and drivers).
#
#   cargo build --release -p rtgt && bench/vhost.sh
#
# Needs /dev/kvm where the guest runs under it: without KVM the harness falls back to TCG, whose
# figures say nothing about speed, and this benchmark stops (SKIP) unless ACCEL=tcg is given
# (then it runs as a smoke test and says so on every row).
# Environment: RTGT (default target/release/rtgt), SECS per fio run (default 20), SMP vCPUs
# (default 2), SIZE of each medium (default 1G), OUT (copy the TSV there), HARNESS, KEEP=1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
. "$REPO/tests/guest/lib.sh"
RTGT="$(realpath "${RTGT:-$REPO/target/release/rtgt}")"
SECS="${SECS:-20}" SMP="${SMP:-2}" SIZE="${SIZE:-1G}"
require_harness
[[ -x "$RTGT" ]] || die "no rtgt binary at $RTGT (cargo build --release -p rtgt)"
for t in jq losetup curl; do command -v $t >/dev/null || die "$t is needed"; done
ACCEL_USED="$( . "$HARNESS/lib.sh"; hk_accel 2>/dev/null | tail -1 )"
if [[ "$ACCEL_USED" != kvm && "${ACCEL:-}" != tcg ]]; then
  echo "SKIP: the guest does not run under KVM on this machine (the harness uses $ACCEL_USED);"
  echo "      a benchmark under TCG measures the emulator. ACCEL=tcg runs it anyway as a smoke test."
  exit 0
fi
SMOKE=""; [[ "$ACCEL_USED" != kvm ]] && SMOKE=" (TCG: smoke test, not a measurement)"

PORT="$(free_port)"
IQN="iqn.2026-12.org.rtgt:vhost-bench"
WORK="$(mktemp -d /tmp/rtgt-vbench.XXXXXX)"
SHM="$(mktemp -d /dev/shm/rtgt-vbench.XXXXXX)"
VSOCK="$WORK/vm.sock" CSOCK="$WORK/rtgt.sock"
RPID="" GPID="" LOOPS=()
cleanup() {
  local rc=$?
  [[ -n "$GPID" ]] && kill -0 "$GPID" 2>/dev/null && { kill -TERM -- "-$GPID" 2>/dev/null; sleep 1; kill -KILL -- "-$GPID" 2>/dev/null; }
  [[ -n "$RPID" ]] && kill -0 "$RPID" 2>/dev/null && { kill -TERM "$RPID"; wait "$RPID" 2>/dev/null; }
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$SHM"
  if [[ $rc -eq 0 && "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two media of the same kind, filled (reads of holes would be free).
for m in a b; do
  dd if=/dev/urandom of="$SHM/$m.img" bs=1M count=$(( $(numfmt --from=iec "$SIZE") >> 20 )) status=none
  LOOPS+=("$(losetup --show -f "$SHM/$m.img")")
done
cat > "$WORK/rtgt.toml" <<EOF
[[backstore]]
name = "bench"
type = "blockio"
path = "${LOOPS[0]}"

[[target]]
iqn = "$IQN"
[[target.tpg]]
tag = 1
mode = "demo"
portals = ["127.0.0.1:$PORT"]
[[target.tpg.lun]]
lun = 0
backstore = "bench"

[[vhost]]
socket = "$VSOCK"
num_queues = $SMP
[[vhost.lun]]
lun = 0
backstore = "bench"
EOF
"$RTGT" serve --config "$WORK/rtgt.toml" --control "$CSOCK" > "$WORK/rtgt.log" 2>&1 &
RPID=$!
for _ in $(seq 100); do [[ -S "$VSOCK" ]] && break; sleep 0.1; done
[[ -S "$VSOCK" ]] || { cat "$WORK/rtgt.log"; die "rtgt did not start"; }

# CPU seconds (user + system, every thread) a process has used.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
qemu_pid() { pgrep -f "^qemu-system-x86_64 .*$WORK" | head -1; }  # not the timeout wrapping it
: > "$WORK/cpu.tsv"
step() {
  local q; q="$(qemu_pid)"
  [[ -n "$q" ]] || { ANS="fail no QEMU process"; return; }
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(cpu_s "$RPID")" "$(cpu_s "$q")" >> "$WORK/cpu.tsv"
  ANS="ok"
}

MEM=2048
QEMU_BENCH="-object memory-backend-memfd,id=mem,size=${MEM}M,share=on -numa node,memdev=mem"
QEMU_BENCH+=" -chardev socket,id=vhs,path=$VSOCK -device vhost-user-scsi-pci,chardev=vhs,num_queues=$SMP"
QEMU_BENCH+=" -device virtio-scsi-pci,id=vs,num_queues=$SMP"
QEMU_BENCH+=" -drive if=none,id=qd,file=${LOOPS[1]},format=raw,cache=none,aio=io_uring"
QEMU_BENCH+=" -device scsi-hd,drive=qd,bus=vs.0"
JOB="$WORK/job"
mkdir -p "$JOB"
printf 'PORT=%q\nIQN=%q\nSECS=%q\n' "$PORT" "$IQN" "$SECS" > "$JOB/params.env"
SMP="$SMP" MEM=$MEM QEMU_EXTRA="$QEMU_BENCH" run_guest "$JOB" "$HERE/vhost.guest.sh" "$WORK/guest.out"
set +e
serve_requests
GRC=$?
set -e
GPID=""
grep -hE ' (PASS|FAIL|INFO) ' "$SHARE/out/script.log" 2>/dev/null | cut -d' ' -f2- | sed 's/^/  guest: /'

# One row per device and workload: IOPS and MB/s from fio, host CPU per I/O from the samples.
echo
echo "vhost-user-scsi vs QEMU virtio-scsi vs iSCSI, ${SECS}s per run, $SMP vCPUs, ${SIZE} loop devices over /dev/shm$SMOKE"
printf '%-8s %-13s %10s %9s %12s %12s %12s\n' device workload IOPS MB/s "rtgt us/IO" "qemu us/IO" "total us/IO"
TSV="$WORK/results.tsv"
printf 'device\tworkload\tiops\tmbps\trtgt_us_per_io\tqemu_us_per_io\n' > "$TSV"
while IFS=$'\t' read -r what dev wl r0 q0 && IFS=$'\t' read -r _ _ _ r1 q1; do
  [[ $what == begin ]] || continue
  f="$SHARE/out/fio-$dev-$wl.json"
  [[ -s "$f" ]] || { echo "  no fio result for $dev $wl"; GRC=1; continue; }
  read -r iops bw ios < <(jq -r '[.jobs[] | .read.iops + .write.iops] as $i | [.jobs[] | .read.bw_bytes + .write.bw_bytes] as $b | [.jobs[] | .read.total_ios + .write.total_ios] as $n | "\($i | add) \($b | add) \($n | add)"' "$f")
  awk -v d="$dev" -v w="$wl" -v i="$iops" -v b="$bw" -v n="$ios" -v r0="$r0" -v r1="$r1" -v q0="$q0" -v q1="$q1" -v tsv="$TSV" 'BEGIN {
    ru = n > 0 ? (r1 - r0) * 1e6 / n : 0; qu = n > 0 ? (q1 - q0) * 1e6 / n : 0
    printf "%-8s %-13s %10.0f %9.1f %12.1f %12.1f %12.1f\n", d, w, i, b / 1e6, ru, qu, ru + qu
    printf "%s\t%s\t%.0f\t%.1f\t%.1f\t%.1f\n", d, w, i, b / 1e6, ru, qu >> tsv }'
done < "$WORK/cpu.tsv"
echo "(rtgt us/IO: the rtgt process, about 0 on the qemu rows; qemu us/IO: the whole QEMU process,"
echo " vCPUs running the guest included)"
[[ -n "${OUT:-}" ]] && cp "$TSV" "$OUT"
kill -0 "$RPID" 2>/dev/null || { echo "FAIL rtgt: it died"; GRC=1; }
if [[ $GRC -eq 0 ]]; then echo "RESULT: PASS$SMOKE"; else echo "RESULT: FAIL"; fi
exit $GRC
