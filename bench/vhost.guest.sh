#!/bin/bash
# Guest half of bench/vhost.sh: find the three disks, run each fio workload on each, and have
# the host sample CPU time before and after every run ("begin DEV WL" / "end DEV WL").
set -u
. "$(dirname "$0")/lib.guest.sh"
. "$(dirname "$0")/params.env"
modprobe sd_mod; modprobe virtio_scsi
NJ="$(nproc)"
# by_vendor DRIVER VENDOR: the sd disk of a host of DRIVER whose INQUIRY vendor is VENDOR
by_vendor() {
    local d h
    for i in $(seq 60); do
        for d in /sys/block/sd*; do
            [ -e "$d/device/vendor" ] || continue
            h="$(basename "$(readlink -f "$d/device")" | cut -d: -f1)"
            [ "$(cat "/sys/class/scsi_host/host$h/proc_name" 2>/dev/null)" = "$1" ] || continue
            [ "$(tr -d ' ' < "$d/device/vendor")" = "$2" ] && { echo "/dev/$(basename "$d")"; return 0; }
        done
        sleep 0.5
    done
    return 1
}
V="$(by_vendor virtio_scsi RTGT)" && pass vhost-disk "$V" || fail vhost-disk "no RTGT disk on virtio_scsi"
Q="$(by_vendor virtio_scsi QEMU)" && pass qemu-disk "$Q" || fail qemu-disk "no QEMU disk on virtio_scsi"
mkdir -p /etc/iscsi /run/lock/iscsi
echo "InitiatorName=iqn.2026-12.org.rtgt:vbench-guest" > /etc/iscsi/initiatorname.iscsi
iscsid
for i in $(seq 50); do [ -e /run/iscsid.pid ] && break; sleep 0.1; done
iscsiadm -m node -o new -T "$IQN" -p "10.0.2.2:$PORT" > /dev/null 2>&1
iscsiadm -m node -T "$IQN" -p "10.0.2.2:$PORT" -o update -n node.session.queue_depth -v 128 > /dev/null 2>&1
iscsiadm -m node -T "$IQN" -p "10.0.2.2:$PORT" --login > "$OUT/logs/login.txt" 2>&1
I="$(by_vendor iscsi_tcp RTGT)" && pass iscsi-disk "$I" || fail iscsi-disk "see logs/login.txt"
for dev in vhost qemu iscsi; do
    case $dev in vhost) D="$V" ;; qemu) D="$Q" ;; iscsi) D="$I" ;; esac
    [ -n "$D" ] || continue
    echo none > "/sys/block/${D#/dev/}/queue/scheduler" 2>/dev/null
    for wl in randread-4k randwrite-4k read-128k write-128k; do
        case $wl in
            randread-4k)  a="--rw=randread --bs=4k --iodepth=32 --numjobs=$NJ" ;;
            randwrite-4k) a="--rw=randwrite --bs=4k --iodepth=32 --numjobs=$NJ" ;;
            read-128k)    a="--rw=read --bs=128k --iodepth=8 --numjobs=1" ;;
            write-128k)   a="--rw=write --bs=128k --iodepth=8 --numjobs=1" ;;
        esac
        ask begin "$dev" "$wl" || { fail "$dev-$wl" "host: $ACK"; continue; }
        # shellcheck disable=SC2086
        fio --name="$dev-$wl" --filename="$D" --direct=1 --ioengine=libaio $a --time_based \
            --runtime="$SECS" --ramp_time=0 --group_reporting --output-format=json \
            --output="$OUT/fio-$dev-$wl.json" > /dev/null 2>&1
        rc=$?
        ask end "$dev" "$wl" || fail "$dev-$wl" "host: $ACK"
        [ $rc -eq 0 ] && pass "$dev-$wl" "fio done" || fail "$dev-$wl" "fio exited $rc"
    done
done
iscsiadm -m node -T "$IQN" -p "10.0.2.2:$PORT" --logout > /dev/null 2>&1
finish
