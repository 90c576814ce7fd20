#!/bin/bash
# Guest half of tests/guest/vhost.sh (PHASE 1: every check, then rtgt is killed; PHASE 2: a new
# VM on the restarted daemon verifies what phase 1 had acknowledged).
set -u
. "$(dirname "$0")/lib.guest.sh"
. "$(dirname "$0")/params.env"
modprobe sd_mod; modprobe sg
# the probe must finish (it stalled with EVENT_IDX offered): give it 120 s
( modprobe virtio_scsi; touch /tmp/probed ) &
for i in $(seq 240); do [ -f /tmp/probed ] && break; sleep 0.5; done
[ -f /tmp/probed ] && pass probe "virtio_scsi loaded" || { fail probe "modprobe virtio_scsi did not return in 120 s"; finish; }

# the SCSI host of a driver (virtio_scsi, iscsi_tcp)
host_of() {
    local h
    for h in /sys/class/scsi_host/host*; do
        [ "$(cat "$h/proc_name" 2>/dev/null)" = "$1" ] && { basename "$h" | sed 's/host//'; return 0; }
    done
    return 1
}
# disk HOST LUN: its /dev/sdX, if there
disk() {
    local b
    b="$(ls /sys/class/scsi_disk/"$1:0:0:$2"/device/block 2>/dev/null | head -1)"
    [ -n "$b" ] && echo "/dev/$b"
}
# wait_disk HOST LUN SECONDS: wait until it is there (prints it)
wait_disk() {
    local i d
    for i in $(seq $(($3 * 2))); do d="$(disk "$1" "$2")"; [ -n "$d" ] && { echo "$d"; return 0; }; sleep 0.5; done
    return 1
}
VH="$(host_of virtio_scsi)" || { fail host "no virtio_scsi host"; finish; }
D="$(wait_disk "$VH" 0 20)" && pass disk "LUN 0 is $D" || { fail disk "no sd disk for LUN 0"; finish; }
F="$(wait_disk "$VH" 3 20)" && pass disk-3 "LUN 3 is $F" || { fail disk-3 "no sd disk for LUN 3"; finish; }

if [ "$PHASE" = 2 ]; then
    # A new VM on the restarted daemon: what phase 1 had acknowledged is there.
    want="$(sed -n 's/^pattern //p' "$(dirname "$0")/acked.txt")"
    got="$(dd if="$D" bs=1M skip=64 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
    [ -n "$want" ] && [ "$got" = "$want" ] && pass acked-pattern "16 MiB written before kill -9 read back (md5 $got)" \
        || fail acked-pattern "md5 '$got', phase 1 acknowledged '$want'"
    mkdir -p /mnt/f
    if mount "$F" /mnt/f 2>"$OUT/logs/mount2.txt"; then
        A="$(cd "$(dirname "$0")" && pwd)/acked.txt"
        (cd /mnt/f && grep -v '^pattern ' "$A" | md5sum -c --quiet) > "$OUT/logs/md5-2.txt" 2>&1 \
            && pass acked-files "the files of phase 1 have their md5" || fail acked-files "see logs/md5-2.txt"
        umount /mnt/f
    else fail acked-files "mount failed: $(cat "$OUT/logs/mount2.txt")"; fi
    finish
fi

# ---------------------------------------------------------------- SCSI and data
sg_inq "$D" > "$OUT/logs/sg_inq.txt" 2>&1 && grep -q "Vendor identification: RTGT" "$OUT/logs/sg_inq.txt" \
    && pass sg_inq "vendor RTGT" || fail sg_inq "see logs/sg_inq.txt"
size="$(sg_readcap "$D" 2>/dev/null | sed -n 's/.*Device size: \([0-9]*\) bytes.*/\1/p')"
[ "$size" = 268435456 ] && pass sg_readcap "$size bytes" || fail sg_readcap "got '$size', want 268435456"
sg_vpd -p di "$D" > "$OUT/logs/vpd-vhost.txt" 2>&1 && pass sg_vpd "device identification page" \
    || fail sg_vpd "see logs/vpd-vhost.txt"
dd if=/dev/urandom of=/tmp/pat bs=1M count=8 2>/dev/null
dd if=/tmp/pat of="$D" bs=1M oflag=direct 2>/dev/null
dd if="$D" of=/tmp/back bs=1M count=8 iflag=direct 2>/dev/null
cmp -s /tmp/pat /tmp/back && pass data "8 MiB written with O_DIRECT read back identical" || fail data "read back differs"
if fio --name=v --filename="$D" --rw=randwrite --bs=4k --size=64M --ioengine=libaio --direct=1 \
       --iodepth=16 --numjobs=2 --offset_increment=64M --verify=crc32c --verify_fatal=1 \
       --output="$OUT/logs/fio.txt" >/dev/null 2>&1; then
    pass fio "2 jobs x 64M randwrite QD16 (one per request queue), crc32c verify"
else fail fio "see logs/fio.txt"; fi
mkdir -p /mnt/f
if mkfs.ext4 -q -F "$F" > "$OUT/logs/mkfs.txt" 2>&1 && mount "$F" /mnt/f; then
    for n in 1 2 3; do dd if=/dev/urandom of=/mnt/f/file$n bs=1M count=$((n * 4)) 2>/dev/null; done
    sync
    (cd /mnt/f && md5sum file1 file2 file3) > /tmp/files.md5
    umount /mnt/f && mount "$F" /mnt/f && (cd /mnt/f && md5sum -c --quiet /tmp/files.md5) \
        && pass filesystem "mkfs.ext4, 3 files, remount, md5 match" || fail filesystem "md5 after remount"
    umount /mnt/f
else fail filesystem "see logs/mkfs.txt"; fi

# ---------------------------------------------------------------- the same LU over iSCSI
mkdir -p /etc/iscsi /run/lock/iscsi
echo "InitiatorName=iqn.2026-12.org.rtgt:vhost-guest" > /etc/iscsi/initiatorname.iscsi
iscsid
for i in $(seq 50); do [ -e /run/iscsid.pid ] && break; sleep 0.1; done
# No discovery: it names the portal as the host binds it (127.0.0.1), which the guest reaches
# as 10.0.2.2.
iscsiadm -m node -o new -T "$IQN" -p "10.0.2.2:$PORT" > "$OUT/logs/node.txt" 2>&1
if iscsiadm -m node -T "$IQN" -p "10.0.2.2:$PORT" --login > "$OUT/logs/login.txt" 2>&1; then
    pass iscsi-login "$IQN"
else fail iscsi-login "see logs/login.txt"; fi
IH="$(host_of iscsi_tcp)"
I="$( [ -n "$IH" ] && wait_disk "$IH" 0 20 )"
if [ -n "$I" ]; then
    pass iscsi-disk "$I"
    sg_vpd -p di "$I" > "$OUT/logs/vpd-iscsi.txt" 2>&1
    nv="$(grep -A1 'NAA' "$OUT/logs/vpd-vhost.txt" | grep -o '0x[0-9a-f]*' | head -1)"
    ni="$(grep -A1 'NAA' "$OUT/logs/vpd-iscsi.txt" | grep -o '0x[0-9a-f]*' | head -1)"
    [ -n "$nv" ] && [ "$nv" = "$ni" ] && pass same-lu "NAA $nv through vhost and iSCSI" \
        || fail same-lu "NAA '$nv' over vhost, '$ni' over iSCSI"
    [ "$(cat /sys/block/${D#/dev/}/device/wwid)" = "$(cat /sys/block/${I#/dev/}/device/wwid)" ] \
        && pass same-wwid "$(cat /sys/block/${I#/dev/}/device/wwid)" || fail same-wwid "the two disks' wwids differ"

    # write1 DEV: WRITE(10) of one block; prints the SCSI status sg_raw reports
    dd if=/dev/zero of=/tmp/blk bs=512 count=1 2>/dev/null
    write1() { sg_raw -s 512 -i /tmp/blk "$1" 2a 00 00 00 01 00 00 00 01 00 2>&1 | tr '\n' ' '; }
    sg_persist -n -o -G -S 0x1111 "$I" > "$OUT/logs/pr.txt" 2>&1 \
        && sg_persist -n -o -R -K 0x1111 -T 1 "$I" >> "$OUT/logs/pr.txt" 2>&1 \
        && pass pr-iscsi "registered 0x1111 and reserved Write Exclusive over iSCSI" || fail pr-iscsi "see logs/pr.txt"
    r="$(sg_persist -n -i -r "$D" 2>&1)"
    echo "$r" >> "$OUT/logs/pr.txt"
    echo "$r" | grep -qi "key=0x1111" && pass pr-seen-vhost "the VM sees the reservation taken over iSCSI" \
        || fail pr-seen-vhost "$r"
    w="$(write1 "$D")"
    echo "$w" | grep -qi "reservation conflict" && pass pr-conflict-vhost "WRITE through vhost: RESERVATION CONFLICT" \
        || fail pr-conflict-vhost "WRITE through vhost: $w"
    dd if="$D" of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null && pass pr-read-vhost "READ through vhost allowed (Write Exclusive)" \
        || fail pr-read-vhost "READ refused"
    sg_persist -n -o -G -S 0x2222 "$D" >> "$OUT/logs/pr.txt" 2>&1 \
        && sg_persist -n -o -P -K 0x2222 -S 0x1111 -T 1 "$D" >> "$OUT/logs/pr.txt" 2>&1 \
        && pass pr-preempt "the VM registered 0x2222 and preempted 0x1111" || fail pr-preempt "see logs/pr.txt"
    # SPC-4 5.14.11.2.4: the preempted nexus hears of it first (UNIT ATTENTION, REGISTRATIONS
    # PREEMPTED), then its writes conflict.
    w="$(write1 "$I")"
    echo "$w" | grep -qi "registrations preempted" && pass pr-fenced-ua "the iSCSI nexus is told: $w" \
        || fail pr-fenced-ua "first WRITE through iSCSI after PREEMPT: $w"
    w="$(write1 "$I")"
    echo "$w" | grep -qi "reservation conflict" && pass pr-fenced-iscsi "WRITE through iSCSI after PREEMPT: RESERVATION CONFLICT" \
        || fail pr-fenced-iscsi "WRITE through iSCSI: $w"
    k="$(sg_persist -n -i -k "$I" 2>&1 | tr '\n' ' ')"
    echo "$k" | grep -qi "0x2222" && ! echo "$k" | grep -qi "0x1111" && pass pr-keys "iSCSI sees only the VM's key: $k" \
        || fail pr-keys "$k"
    # sg_raw exits 0 only for GOOD status
    if w="$(sg_raw -s 512 -i /tmp/blk "$D" 2a 00 00 00 01 00 00 00 01 00 2>&1)"; then
        pass pr-holder-writes "the VM (holder) writes"
    else fail pr-holder-writes "the holder's WRITE: $(echo "$w" | tr '\n' ' ')"; fi
    sg_persist -n -o -C -K 0x2222 "$D" >> "$OUT/logs/pr.txt" 2>&1 && pass pr-clear "CLEAR through vhost" || fail pr-clear "see logs/pr.txt"
    iscsiadm -m node -T "$IQN" -p "10.0.2.2:$PORT" --logout > /dev/null 2>&1
else fail iscsi-disk "no iSCSI disk"; fi

# ---------------------------------------------------------------- LUN hotplug
if ask plug; then
    P="$(wait_disk "$VH" 1 30)" && pass hotplug "LUN 1 appeared as $P without a reboot" \
        || fail hotplug "LUN 1 did not appear in 30 s"
    if [ -n "$P" ]; then
        s="$(sg_readcap "$P" 2>/dev/null | sed -n 's/.*Device size: \([0-9]*\) bytes.*/\1/p')"
        [ "$s" = 67108864 ] && pass hotplug-size "$s bytes" || fail hotplug-size "got '$s'"
    fi
    if [ -z "$P" ]; then fail unplug "nothing to unplug: LUN 1 never appeared"
    elif ask unplug; then
        for i in $(seq 60); do [ -z "$(disk "$VH" 1)" ] && break; sleep 0.5; done
        [ -z "$(disk "$VH" 1)" ] && pass unplug "LUN 1 went" || fail unplug "LUN 1 still there after 30 s"
        [ -n "$(disk "$VH" 0)" ] && pass unplug-others "LUN 0 stayed" || fail unplug-others "LUN 0 went too"
    else fail unplug "$ACK"; fi
else fail hotplug "$ACK"; fi

# ---------------------------------------------------------------- acknowledged data, then kill -9
dd if=/dev/urandom of=/tmp/pat16 bs=1M count=16 2>/dev/null
dd if=/tmp/pat16 of="$D" bs=1M seek=64 oflag=direct conv=fsync 2>/dev/null
echo "pattern $(md5sum < /tmp/pat16 | cut -d' ' -f1)" > "$OUT/acked.txt"
cat /tmp/files.md5 >> "$OUT/acked.txt"
( while dd if=/dev/urandom of="$D" bs=1M seek=128 count=8 oflag=direct 2>/dev/null; do :; done; echo ended > /tmp/writer ) &
sleep 2
if ask kill; then
    t0=$(date +%s)
    for i in $(seq 240); do [ -f /tmp/writer ] && break; sleep 0.5; done
    if [ -f /tmp/writer ]; then pass backend-died "the writer got an I/O error $(( $(date +%s) - t0 )) s after kill -9"
    else
        # Known and not rtgt's to fix: QEMU 7.2's vhost-user-scsi neither reconnects nor fails
        # the virtqueues of a back-end that died, and Linux's virtio_scsi waits for the abort
        # without a timeout. Reported, not counted; phase 2 checks what can be: a new VM on the
        # restarted daemon, and the acknowledged data.
        info backend-died "the writer's I/O still hangs 120 s after kill -9 (QEMU 7.2: no vhost-user-scsi reconnect, no failed virtqueues)"
    fi
else fail backend-died "$ACK"; fi
finish
