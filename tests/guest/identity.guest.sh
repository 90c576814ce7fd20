#!/bin/bash
# Guest half of tests/guest/identity.sh: log in, compare what sg_inq, sg_vpd, sysfs and udev's
# scsi_id report for LUN 0 and 1 with ID0/ID1 (vendor|product|revision|serial|naa), ask the host
# to restart rtgt (out/restart-now), wait for out/restarted and the session to recover, compare
# again. One "PASS|FAIL|INFO step: detail" line per check; exit 0 only if nothing failed.
set -u
cd "$(dirname "$0")"
# shellcheck disable=SC1091
. ./params.env
OUT=/mnt/harness/out
mkdir -p "$OUT/logs"
PORTAL="10.0.2.2:$PORT"
NFAIL=0
say()  { echo "$(date +%T) $*"; }
pass() { say "PASS $1: $2"; }
fail() { say "FAIL $1: $2"; NFAIL=$((NFAIL + 1)); }
info() { say "INFO $1: $2"; }
finish() {
    iscsiadm -m session >/dev/null 2>&1 && iscsiadm -m node -u >/dev/null 2>&1
    dmesg > "$OUT/dmesg.txt"
    if [ "$NFAIL" -eq 0 ]; then say "GUEST-RESULT PASS"; exit 0; fi
    say "GUEST-RESULT FAIL ($NFAIL failed)"; exit 1
}
# same NAME GOT WANT
same() { if [ "$2" = "$3" ]; then pass "$1" "\"$2\""; else fail "$1" "got \"$2\", want \"$3\""; fi; }

mkdir -p /etc/iscsi /run/lock/iscsi
echo "InitiatorName=$INITIATOR_NAME" > /etc/iscsi/initiatorname.iscsi
modprobe iscsi_tcp; modprobe sd_mod; modprobe sg; modprobe crc32c_generic 2>/dev/null
iscsid
for i in $(seq 50); do [ -e /run/iscsid.pid ] && break; sleep 0.1; done
if ! out="$(iscsiadm -m discovery -t sendtargets -p "$PORTAL" -o nonpersistent 2>&1)"; then
    fail discovery "$out"; finish
fi
iscsiadm -m node -o new -T "$IQN" -p "$PORTAL" >/dev/null
iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.timeo.replacement_timeout -v 60
if ! out="$(iscsiadm -m node -T "$IQN" -p "$PORTAL" --login 2>&1)"; then fail login "$out"; finish; fi
pass login "$IQN at $PORTAL"

# dev LUN: /dev/sdX of that LUN of the session
dev() {
    local d
    for d in /sys/class/iscsi_session/session*/device/target*/*:*:*:"$1"; do
        [ -d "$d/block" ] && { echo "/dev/$(ls "$d/block" | head -1)"; return 0; }
    done
    return 1
}
for i in $(seq 60); do dev 0 >/dev/null && dev 1 >/dev/null && break; sleep 0.5; done
dev 1 >/dev/null || { fail find-disks "LUN 0 and 1 did not both appear"; finish; }

# sg_inq prints "Vendor identification: X" etc.; sysfs pads with blanks
field() { sed -n "s/^ *$1: *//p" | sed 's/ *$//' | head -1; }
trim() { sed 's/^ *//;s/ *$//'; }
scsi_id() {
    local b
    for b in /lib/udev/scsi_id /usr/lib/udev/scsi_id; do
        [ -x "$b" ] && { "$b" --whitelisted --device="$1"; return; }
    done
    echo "(no scsi_id)"
}
check() {  # ROUND LUN "vendor|product|revision|serial|naa"
    local round=$1 lun=$2 v p r s a d b inq
    IFS='|' read -r v p r s a <<< "$3"
    d="$(dev "$lun")"; b="$(basename "$d")"
    inq="$(sg_inq "$d" 2>&1)"; echo "$inq" > "$OUT/logs/sg_inq-$round-$lun.txt"
    same "$round-lun$lun-sg_inq-vendor"   "$(echo "$inq" | field 'Vendor identification')" "$v"
    same "$round-lun$lun-sg_inq-product"  "$(echo "$inq" | field 'Product identification')" "$p"
    same "$round-lun$lun-sg_inq-revision" "$(echo "$inq" | field 'Product revision level')" "$r"
    same "$round-lun$lun-sg_vpd-sn" "$(sg_vpd -p sn "$d" 2>&1 | field 'Unit serial number')" "$s"
    sg_vpd -p di "$d" > "$OUT/logs/sg_vpd-di-$round-$lun.txt" 2>&1
    # the LU's NAA: the designator printed under "Addressed logical unit"
    local naa
    naa="$(sed -n '/Addressed logical unit/,/Target port/p' "$OUT/logs/sg_vpd-di-$round-$lun.txt" \
        | sed -n 's/^ *0x\([0-9a-fA-F]\{16,32\}\)$/\1/p' | head -1 | tr A-F a-f)"
    same "$round-lun$lun-sg_vpd-di-naa" "$naa" "$a"
    same "$round-lun$lun-sysfs-vendor" "$(trim < "/sys/block/$b/device/vendor")" "$v"
    same "$round-lun$lun-sysfs-model"  "$(trim < "/sys/block/$b/device/model")" "$p"
    same "$round-lun$lun-sysfs-rev"    "$(trim < "/sys/block/$b/device/rev")" "$r"
    same "$round-lun$lun-sysfs-wwid"   "$(trim < "/sys/block/$b/device/wwid")" "naa.$a"
    same "$round-lun$lun-scsi_id"      "$(scsi_id "$d")" "3$a"
}
check before 0 "$ID0"
check before 1 "$ID1"

cut -d' ' -f1 /proc/uptime > "$OUT/restart-now"
for i in $(seq 240); do [ -f "$OUT/restarted" ] && break; sleep 0.5; done
[ -f "$OUT/restarted" ] || { fail restart "the host did not restart rtgt within 120s"; finish; }
# the session recovers: a read through it succeeds again
ok=0
for i in $(seq 60); do
    if dd if="$(dev 0)" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then ok=1; break; fi
    sleep 1
done
if [ $ok = 1 ]; then pass reconnect "a read on LUN 0 after the restart succeeded"; else fail reconnect "no read after 60s"; fi
# the values as the target reports them now (sysfs keeps what it read at scan: rescan first)
iscsiadm -m session -R > "$OUT/logs/rescan.log" 2>&1
sleep 2
check after 0 "$ID0"
check after 1 "$ID1"
finish
