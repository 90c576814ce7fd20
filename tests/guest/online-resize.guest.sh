#!/bin/bash
# Guest half of tests/guest/online-resize.sh (run inside the Linux initiator harness guest by
# guest-run.sh; the host half starts rtgt, boots the guest and grows the LU).
#
# Logs in with open-iscsi, makes ext4 on the LU, mounts it, starts fio (write + crc32c verify)
# on files in it, asks the host to grow the LU (out/ready-to-grow), waits for out/grown, then:
# records whether the kernel saw the new size by itself, reads the target's capacity with
# sg_readcap, rescans the session (iscsiadm -m session -R), waits for blockdev --getsize64 to
# show the new size, resize2fs's the mounted fs, checks df, writes more than the old fs could
# hold, lets fio finish (verify clean), unmounts, e2fsck's, logs out and scans dmesg.
# One "PASS|FAIL|SKIP|INFO step: detail" line per step; exit 0 only if nothing failed.
# Parameters: params.env beside this script (written by the host half).
set -u
cd "$(dirname "$0")"
# shellcheck disable=SC1091
. ./params.env
OUT=/mnt/harness/out
MNT=/mnt/resize
ST=/run/online-resize
mkdir -p "$ST" "$MNT" "$OUT/logs"
PORTAL="10.0.2.2:$PORT"
NFAIL=0

say()  { echo "$(date +%T) $*"; }
pass() { say "PASS $1: $2"; }
fail() { say "FAIL $1: $2"; NFAIL=$((NFAIL + 1)); }
skip() { say "SKIP $1: $2"; }
info() { say "INFO $1: $2"; }
# finish: best-effort cleanup, then the verdict
finish() {
    [ -n "${FIOPID:-}" ] && kill -0 "$FIOPID" 2>/dev/null && { kill "$FIOPID"; wait "$FIOPID" 2>/dev/null; }
    mountpoint -q "$MNT" && umount "$MNT" 2>/dev/null
    iscsiadm -m session >/dev/null 2>&1 && iscsiadm -m node -u >/dev/null 2>&1
    dmesg > "$OUT/dmesg.txt"
    if [ "$NFAIL" -eq 0 ]; then say "GUEST-RESULT PASS"; exit 0; fi
    say "GUEST-RESULT FAIL ($NFAIL failed)"; exit 1
}
mib() { echo "$(( $1 / 1048576 ))MiB"; }
df_bytes() { df -B1 --output="$1" "$MNT" | tail -1 | tr -d ' '; }   # size | avail

# ---------------------------------------------------------------- login
mkdir -p /etc/iscsi /run/lock/iscsi
echo "InitiatorName=$INITIATOR_NAME" > /etc/iscsi/initiatorname.iscsi
modprobe iscsi_tcp; modprobe sd_mod; modprobe sg; modprobe crc32c_generic 2>/dev/null
iscsid
for i in $(seq 50); do [ -e /run/iscsid.pid ] && break; sleep 0.1; done
if ! out="$(iscsiadm -m discovery -t sendtargets -p "$PORTAL" -o nonpersistent 2>&1)"; then
    fail discovery "$out"; finish
fi
echo "$out" | awk '{print $2}' | grep -qxF "$IQN" || { fail discovery "$IQN not in: $out"; finish; }
iscsiadm -m node -o new -T "$IQN" -p "$PORTAL" >/dev/null
iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.timeo.replacement_timeout -v 20
if ! out="$(iscsiadm -m node -T "$IQN" -p "$PORTAL" --login 2>&1)"; then fail login "$out"; finish; fi
pass login "$IQN at $PORTAL as $INITIATOR_NAME"

DEV=""
for i in $(seq 60); do
    for d in /sys/class/iscsi_session/session*/device/target*/*:*:*:0; do
        [ -d "$d/block" ] || continue
        b="$(ls "$d/block" | head -1)"
        [ -b "/dev/$b" ] && [ "$(cat "/sys/block/$b/size")" -gt 0 ] && DEV=/dev/$b
    done
    [ -n "$DEV" ] && break
    sleep 0.5
done
[ -n "$DEV" ] || { fail find-disk "no disk for LUN 0 appeared"; finish; }
SZ0="$(blockdev --getsize64 "$DEV")"
if [ "$SZ0" = "$SIZE0" ]; then
    pass size-before "$DEV is $SZ0 bytes ($(mib "$SZ0")), logical block $(blockdev --getss "$DEV")"
else
    fail size-before "$DEV is $SZ0 bytes, expected $SIZE0"; finish
fi

# ---------------------------------------------------------------- ext4 + fio
if ! mkfs.ext4 -F -q "$DEV" > "$OUT/logs/mkfs.log" 2>&1; then fail mkfs "$(tail -3 "$OUT/logs/mkfs.log")"; finish; fi
mount -t ext4 "$DEV" "$MNT" || { fail mount "mount $DEV failed"; finish; }
DF0="$(df_bytes size)"
pass mkfs-mount "ext4 on $DEV mounted at $MNT, df size $DF0 ($(mib "$DF0")), block size $(stat -f -c %S "$MNT")"
dumpe2fs -h "$DEV" 2>/dev/null | grep -E '^(Block count|Block size|Reserved GDT blocks|Filesystem features)' > "$OUT/logs/dumpe2fs-before.txt"

mkdir -p "$MNT/fio"
FIOOUT="$OUT/logs/fio-bg.out"
# write + crc32c verify, FIO_LOOPS passes over FIO_JOBS files of FIO_SIZE each
fio --name=bg --directory="$MNT/fio" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
    --iodepth=16 --numjobs="$FIO_JOBS" --size="$FIO_SIZE" --loops="$FIO_LOOPS" \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --exitall_on_error --group_reporting \
    --output="$FIOOUT" > "$OUT/logs/fio-bg.stdout" 2>&1 &
FIOPID=$!
T_FIO0=$(date +%s)
# fio lays its files out first; wait until they all exist at full size
want=$(numfmt --from=iec "${FIO_SIZE}")
for i in $(seq 100); do
    n=0
    for f in "$MNT"/fio/bg.*; do [ -f "$f" ] && [ "$(stat -c %s "$f")" -ge "$want" ] && n=$((n + 1)); done
    [ "$n" -ge "$FIO_JOBS" ] && break
    kill -0 "$FIOPID" 2>/dev/null || break
    sleep 0.2
done
sleep 2
if ! kill -0 "$FIOPID" 2>/dev/null; then
    fail fio-start "fio exited early: $(tail -5 "$FIOOUT" "$OUT/logs/fio-bg.stdout" 2>/dev/null | tr '\n' ' ')"; finish
fi
AVAIL0="$(df_bytes avail)"
pass fio-start "fio pid $FIOPID: $FIO_JOBS x $FIO_SIZE randwrite 4k QD16 verify=crc32c, $FIO_LOOPS loops; df avail now $(mib "$AVAIL0")"

# ---------------------------------------------------------------- the host grows the LU
cut -d' ' -f1 /proc/uptime > "$OUT/ready-to-grow"
say "waiting up to ${GROW_WAIT}s for the host to grow the LU (out/grown)"
for i in $(seq $((GROW_WAIT * 2))); do [ -f "$OUT/grown" ] && break; sleep 0.5; done
[ -f "$OUT/grown" ] || { fail host-grow "the host did not answer within ${GROW_WAIT}s"; finish; }
info host-grow "host says: $(cat "$OUT/grown")"
# let fio's commands meet the unit attention (if any), then see what the kernel did by itself
sleep "$SETTLE"
SZ_AUTO="$(blockdev --getsize64 "$DEV")"
UA="$(dmesg | grep -iE 'capacity data has changed|capacity change' | tr -s ' ' | tail -3 | tr '\n' ';')"
info no-rescan "${SETTLE}s after the grow, before any rescan: $DEV is $SZ_AUTO bytes ($(mib "$SZ_AUTO")); kernel log: ${UA:-nothing about capacity}"

# the target's own answer (the unit attention, if still pending, fails the first try)
RC_BYTES=""
for i in 1 2 3; do
    if rc_out="$(sg_readcap --16 "$DEV" 2>&1)"; then
        nblk=$(echo "$rc_out" | sed -n 's/.*Number of logical blocks=\([0-9]*\).*/\1/p' | head -1)
        lbs=$(echo "$rc_out" | sed -n 's/.*Logical block length=\([0-9]*\).*/\1/p' | head -1)
        RC_BYTES=$((nblk * lbs)); break
    fi
    echo "sg_readcap try $i: $rc_out" >> "$OUT/logs/sg_readcap.log"
    sleep 1
done
if [ "$RC_BYTES" = "$SIZE1" ]; then
    pass target-capacity "READ CAPACITY(16): $nblk x $lbs = $RC_BYTES bytes ($(mib "$RC_BYTES"))"
else
    fail target-capacity "READ CAPACITY(16) says ${RC_BYTES:-nothing ($(echo "$rc_out" | tail -1))} bytes, expected $SIZE1"
fi

iscsiadm -m session -R > "$OUT/logs/rescan.log" 2>&1; rrc=$?
SZ1=""
for i in $(seq $((RESCAN_WAIT * 2))); do
    SZ1="$(blockdev --getsize64 "$DEV")"
    [ "$SZ1" = "$SIZE1" ] && break
    sleep 0.5
done
if [ "$SZ1" = "$SIZE1" ]; then
    pass size-after "iscsiadm -m session -R (rc=$rrc): blockdev --getsize64 $SZ0 -> $SZ1 ($(mib "$SZ0") -> $(mib "$SZ1"))"
else
    fail size-after "after iscsiadm -m session -R (rc=$rrc) and ${RESCAN_WAIT}s: $DEV is $SZ1 bytes, expected $SIZE1"
fi

GREW=0
if [ "$SZ1" = "$SIZE1" ]; then
    if out="$(resize2fs "$DEV" 2>&1)"; then
        pass resize2fs "$(echo "$out" | grep -iE 'long|resiz' | tail -1)"
    else
        fail resize2fs "rc=$?: $(echo "$out" | tail -3 | tr '\n' ' ')"
    fi
    echo "$out" > "$OUT/logs/resize2fs.log"
    kill -0 "$FIOPID" 2>/dev/null && FIO_DURING="yes" || FIO_DURING="no"
    DF1="$(df_bytes size)"
    if [ "$DF1" -gt "$DF0" ] && [ "$DF1" -ge $((SIZE1 * 9 / 10)) ]; then
        pass df-after "df size $DF0 -> $DF1 ($(mib "$DF0") -> $(mib "$DF1")), avail $(mib "$(df_bytes avail)")"; GREW=1
    else
        fail df-after "df size $DF0 -> $DF1 ($(mib "$DF0") -> $(mib "$DF1")), expected about $(mib "$SIZE1")"
    fi
    if [ "$FIO_DURING" = yes ]; then
        pass fio-during-resize "fio still running when resize2fs returned ($(( $(date +%s) - T_FIO0 ))s into it)"
    else
        fail fio-during-resize "fio had finished before resize2fs returned: raise FIO_LOOPS"
    fi
else
    skip resize2fs "the device did not grow"
fi
dumpe2fs -h "$DEV" 2>/dev/null | grep -E '^(Block count|Block size|Reserved GDT blocks)' > "$OUT/logs/dumpe2fs-after.txt"

# ---------------------------------------------------------------- use the new space
if [ "$GREW" = 1 ]; then
    # more than the old filesystem had free while fio's files were in it
    big=$(( AVAIL0 / 1048576 + 64 ))M
    if fio --name=grown --filename="$MNT/grown.dat" --ioengine=libaio --direct=1 --rw=write --bs=256k \
           --iodepth=8 --size="$big" --verify=crc32c --do_verify=1 --verify_fatal=1 --exitall_on_error \
           --output="$OUT/logs/fio-grown.out" > "$OUT/logs/fio-grown.stdout" 2>&1 \
       && ! grep -qiE 'verify.*fail|bad magic|crc32c.*wanted|io_u error' "$OUT/logs/fio-grown.out"; then
        pass fio-new-space "wrote and verified $big in one file (the fs had $(mib "$AVAIL0") free before the grow)"
    else
        fail fio-new-space "fio $big: $(grep -m3 -iE 'err=|error|verify' "$OUT/logs/fio-grown.out" "$OUT/logs/fio-grown.stdout" | tr '\n' ' ')"
    fi
else
    skip fio-new-space "the filesystem did not grow"
fi

# ---------------------------------------------------------------- fio's verdict
wait "$FIOPID"; frc=$?
FIOPID=""
T_FIO=$(( $(date +%s) - T_FIO0 ))
ferr="$(grep -o 'err= *[0-9]*' "$FIOOUT" | head -1 | tr -d ' ')"
fbw="$(grep -E '^ +(READ|WRITE):' "$FIOOUT" | sed 's/ (.*//;s/^ *//' | tr -s ' ' | tr '\n' ';')"
if [ "$frc" -eq 0 ] && [ "$ferr" = "err=0" ] \
   && ! grep -qiE 'verify.*fail|bad magic|crc32c.*wanted|io_u error' "$FIOOUT" "$OUT/logs/fio-bg.stdout"; then
    pass fio-verify "rc=0 $ferr after ${T_FIO}s, no verify errors; $fbw"
else
    fail fio-verify "rc=$frc ${ferr:-no err= line} after ${T_FIO}s: $(grep -m3 -iE 'verify|error|bad' "$FIOOUT" "$OUT/logs/fio-bg.stdout" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- unmount, fsck, logout
if umount "$MNT"; then
    if out="$(e2fsck -fn "$DEV" 2>&1)"; then pass e2fsck "clean: $(echo "$out" | tail -1)"
    else fail e2fsck "$(echo "$out" | tail -5 | tr '\n' ' ')"; fi
    echo "$out" > "$OUT/logs/e2fsck.log"
else
    fail umount "umount $MNT failed"
fi
if iscsiadm -m node -T "$IQN" -p "$PORTAL" --logout >/dev/null 2>&1; then pass logout "session closed"
else fail logout "iscsiadm --logout failed"; fi

dmesg > "$OUT/dmesg.txt"
bad="$(grep -Ei 'detected conn error|I/O error|EXT4-fs (error|warning)|Buffer I/O error|Sense Key : (Medium|Hardware|Aborted)|rejected I/O|timing out command|session recovery timed out' "$OUT/dmesg.txt")"
if [ -n "$bad" ]; then fail dmesg "$(echo "$bad" | wc -l) suspicious line(s): $(echo "$bad" | head -2 | tr '\n' ' ')"
else pass dmesg "no I/O, connection or ext4 errors"; fi
finish
