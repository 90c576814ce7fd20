#!/bin/bash
# Guest half of tests/guest/multipath.sh: two paths (tpg1 on P1, tpg2 on P2) to one LU, udevd and
# multipathd with scsi_dh_alua / prio alua, fio randwrite+verify on the map while the host
# changes ALUA states and kills a portal (one step per out/req-N, answered in out/ack-N), then
# sg_persist across the paths and a second initiator. One "PASS|FAIL|INFO step: detail" line
# per check; exit 0 only if nothing failed.
set -u
cd "$(dirname "$0")"
# shellcheck disable=SC1091
. ./params.env
OUT=/mnt/harness/out
mkdir -p "$OUT/logs"
NFAIL=0
say()  { echo "$(date +%T) $*"; }
pass() { say "PASS $1: $2"; }
fail() { say "FAIL $1: $2"; NFAIL=$((NFAIL + 1)); }
info() { say "INFO $1: $2"; }
finish() {
    touch /tmp/fio-stop
    pkill multipathd 2>/dev/null
    multipath -F >/dev/null 2>&1
    iscsiadm -m session >/dev/null 2>&1 && iscsiadm -m node -u >/dev/null 2>&1
    dmesg > "$OUT/dmesg.txt"
    if [ "$NFAIL" -eq 0 ]; then say "GUEST-RESULT PASS"; exit 0; fi
    say "GUEST-RESULT FAIL ($NFAIL failed)"; exit 1
}
# ok NAME DETAIL CMD...: PASS if CMD succeeds
ok()  { local n=$1 d=$2; shift 2; if "$@" >> "$OUT/logs/cmds.log" 2>&1; then pass "$n" "$d"; else fail "$n" "$d: '$*' failed"; fi; }
# no NAME DETAIL CMD...: PASS if CMD fails
no()  { local n=$1 d=$2; shift 2; if "$@" >> "$OUT/logs/cmds.log" 2>&1; then fail "$n" "$d: '$*' succeeded"; else pass "$n" "$d"; fi; }

mkdir -p /etc/iscsi /run/lock/iscsi /etc/multipath
echo "InitiatorName=$INITIATOR_A" > /etc/iscsi/initiatorname.iscsi
modprobe iscsi_tcp; modprobe sd_mod; modprobe sg; modprobe crc32c_generic 2>/dev/null
modprobe scsi_dh_alua; modprobe dm_multipath; modprobe dm_round_robin 2>/dev/null
# udev: multipathd takes its paths from the udev database
/lib/systemd/systemd-udevd --daemon 2>/dev/null || /usr/lib/systemd/systemd-udevd --daemon
iscsid
for i in $(seq 50); do [ -e /run/iscsid.pid ] && break; sleep 0.1; done

# login PORT [IFACE]: a session with dm-multipath's timeouts (a dead path is failed to
# multipath after ~5 s of NOP-Out silence plus the 5 s replacement timeout)
login() {
    local p="10.0.2.2:$1" i=${2:-default} o
    iscsiadm -m node -o new -T "$IQN" -p "$p" -I "$i" >/dev/null
    for o in node.session.timeo.replacement_timeout=5 node.conn[0].timeo.noop_out_interval=2 \
             node.conn[0].timeo.noop_out_timeout=3; do
        iscsiadm -m node -T "$IQN" -p "$p" -I "$i" -o update -n "${o%%=*}" -v "${o#*=}"
    done
    iscsiadm -m node -T "$IQN" -p "$p" -I "$i" --login
}
for p in $P1 $P2; do
    if out="$(login $p 2>&1)"; then pass "login-$p" "$INITIATOR_A through 10.0.2.2:$p"
    else fail "login-$p" "$out"; finish; fi
done
# disk TAG [INITIATOR]: the /dev/sdX of LUN 0 through that tpg (and initiator)
disk() {
    local s
    for s in /sys/class/iscsi_session/session*; do
        [ "$(cat "$s/tpgt")" = "$1" ] || continue
        [ -n "${2:-}" ] && [ "$(cat "$s/initiatorname")" != "$2" ] && continue
        for d in "$s"/device/target*/*:*:*:0/block/*; do
            [ -e "$d" ] && { echo "/dev/$(basename "$d")"; return 0; }
        done
    done
    return 1
}
for i in $(seq 60); do disk 1 >/dev/null && disk 2 >/dev/null && break; sleep 0.5; done
SA="$(disk 1)" SB="$(disk 2)" || { fail disks "the LU did not appear through both tpgs"; finish; }
info disks "tpg1: $SA, tpg2: $SB"
udevadm trigger --action=add --subsystem-match=block; udevadm settle -t 30

# sg_rtpg as the initiator sees it through each path
for d in "$SA" "$SB"; do sg_rtpg -d "$d" > "$OUT/logs/sg_rtpg-$(basename "$d").txt" 2>&1; done
cat "$OUT/logs/sg_rtpg-$(basename "$SA").txt"
if grep -q 'asymmetric access state : 0x00 (active/optimized)' "$OUT/logs/sg_rtpg-$(basename "$SA").txt" \
   && grep -q '0x01 (active/non optimized)' "$OUT/logs/sg_rtpg-$(basename "$SA").txt"; then
    pass sg_rtpg "group 1 active/optimized, group 2 active/non-optimized"
    grep -q 'target port group id : 0x1 , Pref=1' "$OUT/logs/sg_rtpg-$(basename "$SA").txt" \
        && pass sg_rtpg-pref "group 1 preferred" || fail sg_rtpg-pref "no Pref=1 on group 1"
else fail sg_rtpg "see logs/sg_rtpg-$(basename "$SA").txt"; fi
state() { cat "/sys/block/$(basename "$1")/device/access_state" 2>/dev/null; }
info access_state "$SA $(state "$SA"), $SB $(state "$SB")"

cat > /etc/multipath.conf <<'EOF'
defaults {
    user_friendly_names no
    find_multipaths no
    polling_interval 2
}
devices {
    device {
        vendor "RTGT"
        product ".*"
        path_grouping_policy group_by_prio
        prio alua
        hardware_handler "1 alua"
        path_checker tur
        failback immediate
        no_path_retry 60
    }
}
EOF
multipathd -d -s > "$OUT/logs/multipathd.log" 2>&1 &
MP=""
for i in $(seq 60); do
    MP="$(dmsetup ls --target multipath 2>/dev/null | awk 'NR==1 {print $1}')"
    [ -n "$MP" ] && [ "$(multipath -ll "$MP" 2>/dev/null | grep -c 'status=')" -ge 2 ] && break
    MP=""; sleep 1
done
[ -n "$MP" ] || { fail multipath "no map with two path groups after 60 s"; multipath -v3 > "$OUT/logs/multipath-v3.txt" 2>&1; finish; }
multipath -ll "$MP" | tee "$OUT/logs/multipath-ll-0.txt"
# prio alua: Active/Optimized 50 (its preferred bit adds nothing then), Active/Non-optimized 10
if grep -A1 'prio=50 status=active' "$OUT/logs/multipath-ll-0.txt" | grep -q "$(basename "$SA")" \
   && grep -A1 'prio=10 status=enabled' "$OUT/logs/multipath-ll-0.txt" | grep -q "$(basename "$SB")"; then
    pass multipath-ll "map $MP: tpg1's path prio=50 active, tpg2's prio=10 enabled"
else fail multipath-ll "see logs/multipath-ll-0.txt"; fi
DEV="/dev/mapper/$MP"

# fio: rounds of 4k random writes with crc32c verify of every block (verify_backlog), until
# /tmp/fio-stop; each round's exit status to /tmp/fio.rc
rm -f /tmp/fio-stop /tmp/fio.rc
(
    r=0
    while [ ! -f /tmp/fio-stop ]; do
        r=$((r + 1))
        fio --name=mp --filename="$DEV" --rw=randwrite --bs=4k --size=128M --ioengine=libaio \
            --direct=1 --iodepth=16 --verify=crc32c --verify_fatal=1 --verify_backlog=1024 \
            --output="$OUT/logs/fio-$r.txt" >/dev/null 2>&1
        echo "$r $?" >> /tmp/fio.rc
    done
) &
FIO=$!
sleep 5

# ask STEP: the host does it and measures; wait for its answer
N=0
ask() {
    N=$((N + 1))
    echo "$1" > "$OUT/.req-$N" && mv "$OUT/.req-$N" "$OUT/req-$N"   # whole, or not there
    for i in $(seq 900); do [ -f "$OUT/ack-$N" ] && break; sleep 0.2; done
    local a; a="$(cat "$OUT/ack-$N" 2>/dev/null)"
    multipath -ll "$MP" > "$OUT/logs/multipath-ll-$N-$1.txt" 2>&1
    case "$a" in
        "ok 0 0") pass "step-$1" "done" ;;
        ok*) set -- "$1" $a; pass "step-$1" "writes on the new path after $3 ms, only there after $4 ms ($SA $(state "$SA"), $SB $(state "$SB"))" ;;
        "")  fail "step-$1" "no answer from the host in 180 s" ;;
        *)   fail "step-$1" "$a" ;;
    esac
    kill -0 $FIO 2>/dev/null || fail "step-$1" "the fio loop ended"
}
ask move
ask standby
ask back
ask unavail
ask back2
ask dead
ask alive
ask explicit
# explicit ALUA from the initiator: tpg1 optimized, tpg2 standby, through tpg1's path
sg_stpg --help > "$OUT/logs/sg_stpg-help.txt" 2>&1
ok sg_stpg "SET TARGET PORT GROUPS: group 1 active/optimized, group 2 standby" \
    sg_stpg -v --tp=1,2 --state=0,2 "$SA"
sg_rtpg -d "$SB" > "$OUT/logs/sg_rtpg-after-stpg.txt" 2>&1
if grep -q '0x02 (standby)' "$OUT/logs/sg_rtpg-after-stpg.txt"; then pass sg_rtpg-after-stpg "group 2 standby"
else fail sg_rtpg-after-stpg "see logs/sg_rtpg-after-stpg.txt"; fi
ask stpg
ask restart
sg_rtpg -d "$SA" > "$OUT/logs/sg_rtpg-after-restart.txt" 2>&1
if grep -q '0x02 (standby)' "$OUT/logs/sg_rtpg-after-restart.txt" \
   && grep -q '0x00 (active/optimized)' "$OUT/logs/sg_rtpg-after-restart.txt"; then
    pass sg_rtpg-after-restart "the states the initiator set came back with the daemon"
else fail sg_rtpg-after-restart "see logs/sg_rtpg-after-restart.txt"; fi

touch /tmp/fio-stop
wait $FIO
rounds="$(wc -l < /tmp/fio.rc)"
bad="$(awk '$2 != 0' /tmp/fio.rc | wc -l)"
cat "$OUT"/logs/fio-*.txt > "$OUT/logs/fio-all.txt" 2>/dev/null
verr="$(grep -c 'verify:.*bad\|crc32c: verify failed\|fio: pid=.*err=' "$OUT/logs/fio-all.txt")"
if [ "$rounds" -gt 0 ] && [ "$bad" -eq 0 ] && [ "$verr" -eq 0 ]; then
    pass fio-verify "$rounds rounds of 128M randwrite+crc32c verify on $DEV, every one exit 0, no verify error"
else fail fio-verify "$bad of $rounds rounds failed, $verr verify errors (logs/fio-*.txt)"; fi
dmerr="$(dmesg | grep -E 'dm-[0-9]+.*(I/O error|critical)|Buffer I/O error on dev dm' | head -3)"
if [ -z "$dmerr" ]; then pass no-dm-errors "no I/O error on the multipath device in dmesg"
else fail no-dm-errors "$dmerr"; fi

# ------------------------------------------------ persistent reservations across the paths
pkill multipathd; sleep 1; multipath -F >/dev/null 2>&1
iscsiadm -m iface -I ifb -o new >/dev/null
iscsiadm -m iface -I ifb -o update -n iface.initiatorname -v "$INITIATOR_B" >/dev/null
iscsiadm -m iface -I ifb -o update -n iface.transport_name -v tcp >/dev/null
if out="$(login "$P2" ifb 2>&1)"; then pass login-b "$INITIATOR_B through 10.0.2.2:$P2"
else fail login-b "$out"; finish; fi
for i in $(seq 60); do disk 2 "$INITIATOR_B" >/dev/null && break; sleep 0.5; done
SC="$(disk 2 "$INITIATOR_B")" || { fail disk-b "no disk for $INITIATOR_B"; finish; }
SA="$(disk 1 "$INITIATOR_A")"; SB="$(disk 2 "$INITIATOR_A")"
info pr-paths "A via tpg1 $SA, A via tpg2 $SB, B via tpg2 $SC"
wr() { dd if=/dev/zero of="$1" bs=4k count=1 seek=100 oflag=direct conv=notrunc 2>&1; }
keys() { sg_persist -n -i -k "$1" 2>/dev/null | sed -n 's/^ *\(0x[0-9a-f]*\) *$/\1/p' | sort | tr '\n' ' ' | sed 's/ $//'; }
same() { if [ "$2" = "$3" ]; then pass "$1" "\"$2\""; else fail "$1" "got \"$2\", want \"$3\""; fi; }
sg_persist -n -o -C -K 0 "$SA" >/dev/null 2>&1   # nothing left from an earlier run (ramdisk: none)

# both paths active again (explicit ALUA is on since the "explicit" step)
ok pr-paths-active "sg_stpg: both groups active/optimized" sg_stpg --tp=1,2 --state=0,0 "$SA"
sleep 1; sg_turs "$SA" >/dev/null 2>&1; sg_turs "$SB" >/dev/null 2>&1; sg_turs "$SC" >/dev/null 2>&1
ok pr-register "A registers 0xa1 through tpg1" sg_persist -n -o -G -S 0xa1 "$SA"
same pr-keys-other-path "$(keys "$SB")" "0xa1"
ok pr-reserve "A reserves through tpg1 (type 5, Write Exclusive - registrants only)" \
    sg_persist -n -o -R -K 0xa1 -T 5 "$SA"
ok pr-registered-write "A writes through tpg1" wr "$SA"
# open-iscsi gives each session its own ISID: A through tpg2 is another I_T nexus, unregistered
no pr-other-nexus-write "A cannot write through tpg2: that I_T nexus is not registered" wr "$SB"
no pr-other-nexus-prout "nor use the key there" sg_persist -n -o -R -K 0xa1 -T 5 "$SB"
ok pr-register-second-path "A registers 0xa1 through tpg2 too (fence_scsi registers every path)" \
    sg_persist -n -o -G -S 0xa1 "$SB"
ok pr-second-path-write "A now writes through tpg2" wr "$SB"
no pr-unregistered-write "B (not registered) cannot write" wr "$SC"
ok pr-register-b "B registers 0xb2 through tpg2" sg_persist -n -o -G -S 0xb2 "$SC"
ok pr-b-writes "B, a registrant, can write" wr "$SC"
same pr-keys-two-initiators "$(keys "$SA")" "0xa1 0xa1 0xb2"
ok pr-preempt "B preempts A's key (fence_scsi fencing A)" sg_persist -n -o -P -K 0xb2 -S 0xa1 -T 5 "$SC"
same pr-keys-after-preempt "$(keys "$SC")" "0xb2"   # (A's first command gets REGISTRATIONS PREEMPTED)
no pr-fenced-write-1 "A, fenced, cannot write through tpg1" wr "$SA"
no pr-fenced-write-2 "A, fenced, cannot write through tpg2" wr "$SB"
no pr-fenced-prout "A's old key is refused" sg_persist -n -o -R -K 0xa1 -T 5 "$SA"
# REGISTER AND MOVE: B hands its reservation, as type 1 (Write Exclusive), to A's nexus on tpg2
# (TransportID: A's iSCSI name; relative target port: tpg2's, from VPD 83h)
ok pr-register-a-again "A registers 0xa3 through tpg1" sg_persist -n -o -G -S 0xa3 "$SA"
rtp2="$(sg_vpd -p di "$SB" 2>/dev/null | sed -n '/Relative target port/,+1p' | grep -o '0x[0-9a-f]*' | head -1)"
info pr-move-target "A through tpg2, relative target port $rtp2"
ok pr-register-and-move "B moves its reservation to A through tpg2" \
    sg_persist -n -o --register-move -K 0xb2 -S 0xa4 -T 1 -Q "$rtp2" -X "$INITIATOR_A" "$SC"
sg_persist -n -i -s "$SA" > "$OUT/logs/pr-full-status.txt" 2>&1
same pr-keys-after-move "$(keys "$SA")" "0xa3 0xa4 0xb2"
if awk '/Key=0xa4/{k=1} k && /Reservation holder/{print "yes"; exit}' "$OUT/logs/pr-full-status.txt" | grep -q yes \
   && grep -q "Relative port address: $rtp2" "$OUT/logs/pr-full-status.txt"; then
    pass pr-full-status "READ FULL STATUS: 0xa4 through relative port $rtp2 holds the reservation"
else fail pr-full-status "see logs/pr-full-status.txt"; fi
ok pr-holder-writes "A, the holder through tpg2, writes (type 1)" wr "$SB"
no pr-nonholder-nexus "A through tpg1 (registered, not the holder) cannot write" wr "$SA"
no pr-old-holder "B (registered, no longer the holder) cannot write" wr "$SC"
ok pr-clear "A clears everything" sg_persist -n -o -C -K 0xa4 "$SB"
same pr-keys-after-clear "$(keys "$SA")" ""
finish
