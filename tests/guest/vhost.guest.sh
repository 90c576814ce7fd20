#!/bin/bash
# Guest half of tests/guest/vhost.sh: the vhost-user-scsi controller's LUN 0 as an sd disk.
# One "PASS|FAIL|INFO step: detail" line per check; exit 0 only if nothing failed.
set -u
OUT=/mnt/harness/out
mkdir -p "$OUT/logs"
NFAIL=0
say()  { echo "$(date +%T) $*"; }
pass() { say "PASS $1: $2"; }
fail() { say "FAIL $1: $2"; NFAIL=$((NFAIL + 1)); }
finish() {
    dmesg > "$OUT/dmesg.txt"
    if [ "$NFAIL" -eq 0 ]; then say "GUEST-RESULT PASS"; exit 0; fi
    say "GUEST-RESULT FAIL ($NFAIL failed)"; exit 1
}
modprobe sd_mod; modprobe sg
# the probe must finish (it stalled with EVENT_IDX offered): give it 120 s
( modprobe virtio_scsi; touch /tmp/probed ) &
for i in $(seq 240); do [ -f /tmp/probed ] && break; sleep 0.5; done
[ -f /tmp/probed ] && pass probe "virtio_scsi loaded" || { fail probe "modprobe virtio_scsi did not return in 120 s"; finish; }
D=""
for i in $(seq 40); do
    for d in /sys/class/scsi_disk/*; do
        b=$(ls "$d/device/block" 2>/dev/null | head -1); [ -n "$b" ] && D=/dev/$b
    done
    [ -n "$D" ] && break; sleep 0.5
done
[ -n "$D" ] && pass disk "$D" || { fail disk "no sd disk appeared"; finish; }
sg_inq "$D" > "$OUT/logs/sg_inq.txt" 2>&1 && grep -q "Vendor identification: RTGT" "$OUT/logs/sg_inq.txt" \
    && pass sg_inq "vendor RTGT" || fail sg_inq "see logs/sg_inq.txt"
size="$(sg_readcap "$D" 2>/dev/null | sed -n 's/.*Device size: \([0-9]*\) bytes.*/\1/p')"
[ "$size" = "$SIZE_BYTES" ] && pass sg_readcap "$size bytes" || fail sg_readcap "got '$size', want $SIZE_BYTES"
dd if=/dev/urandom of=/tmp/pat bs=1M count=8 2>/dev/null
dd if=/tmp/pat of="$D" bs=1M oflag=direct 2>/dev/null
dd if="$D" of=/tmp/back bs=1M count=8 iflag=direct 2>/dev/null
cmp -s /tmp/pat /tmp/back && pass data "8 MiB written with O_DIRECT read back identical" || fail data "read back differs"
if fio --name=v --filename="$D" --rw=randwrite --bs=4k --size=64M --ioengine=libaio --direct=1 \
       --iodepth=16 --verify=crc32c --verify_fatal=1 --output="$OUT/logs/fio.txt" >/dev/null 2>&1; then
    pass fio "64M randwrite + crc32c verify"
else fail fio "see logs/fio.txt"; fi
sg_persist -n -i -k "$D" > "$OUT/logs/prin.txt" 2>&1 && pass sg_persist "PR IN READ KEYS answered" \
    || fail sg_persist "see logs/prin.txt"
finish
