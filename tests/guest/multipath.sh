#!/bin/bash
# multipath.sh: Linux dm-multipath over two ALUA target port groups of rtgt, with fio verify
# running through every failover (issue 17). Run on the host, as root:
#
#   RTGT=target/release/rtgt tests/guest/multipath.sh
#
# Serves one target with two tpgs (two target port groups) on two ports, both exporting one
# fileio LU (it outlives the restart step), with explicit ALUA on. The guest (multipath.guest.sh, in the Linux initiator
# harness) logs in through both, runs udevd and multipathd (scsi_dh_alua, prio alua,
# group_by_prio, failback immediate) and keeps fio randwrite + crc32c verify running on the
# multipath device while it asks the host, one step at a time, to:
#   move      the optimized group from tpg1 to tpg2 (tpg1 loses its preferred bit too: prio alua
#             adds 80 for it to any state but Active/Optimized)
#   standby   tpg2 Standby              -> I/O must move to tpg1
#   back      tpg2 Active/Optimized     -> I/O back on tpg2
#   unavail   tpg2 Unavailable          -> tpg1
#   dead      tpg2's port firewalled (iptables DROP both ways) -> tpg1; then unblocked -> tpg2
#   explicit  [alua] explicit = true added to the file, SIGHUP (the kernel keeps the TPGS it read at
#             login, so it does not answer standby with STPGs of its own)
#   stpg      (guest) sg_stpg: tpg1 optimized, tpg2 standby  -> tpg1; the host checks rtgt saved it
#   restart   rtgt stopped and started again: the STPG-set states come back, I/O resumes on tpg1
# After each step the host measures from its rtgt's per-target-port counters (/api/v1/stats)
# the time until writes arrive on the path that should now carry them, and that the other path
# carries none (a 2 s window). Then fio is stopped (it must have exited 0 every round), and
# sg_persist checks persistent reservations across the two paths and a second initiator:
# a registration holds for its I_T nexus only (open-iscsi gives each session its own ISID, so
# the other path is another initiator port), registering every path as fence_scsi does,
# PREEMPT (fencing), REGISTER AND MOVE to the other initiator's nexus on the other relative port
# and READ FULL STATUS showing it. (ALL_TG_PT needs one initiator port on two target ports,
# which open-iscsi does not make: crates/rtgt/tests/alua.rs covers it.)
# PASS/FAIL lines and a table of failover times; exit 0 only if all passed.
#
# Environment:
#   RTGT=path   the rtgt binary (default: target/release/rtgt of this checkout)
#   HARNESS=dir the Linux initiator harness (default: ../shared/linux-initiator beside the
#               checkout, else /work/shared/linux-initiator); its build.sh must have run
#   WRONG=1     negative control: the host does not apply the "standby" step; must FAIL
#   KEEP=1      keep the work folder even on success
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RTGT="$(realpath "${RTGT:-$REPO/target/release/rtgt}")"
if [[ -z "${HARNESS:-}" ]]; then
  HARNESS="$REPO/../shared/linux-initiator"
  [[ -x "$HARNESS/guest-run.sh" ]] || HARNESS=/work/shared/linux-initiator
fi
IQN="iqn.2026-12.org.rtgt:multipath"
INITIATOR_A="iqn.2026-12.harness:mp-a"
INITIATOR_B="iqn.2026-12.harness:mp-b"

T0=$SECONDS
say() { echo "[$(date +%T)] $*"; }
die() { echo "FAIL setup: $*"; echo "RESULT: FAIL"; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root"
[[ -x "$RTGT" ]] || die "no rtgt binary at $RTGT (set RTGT=)"
[[ -x "$HARNESS/guest-run.sh" ]] || die "no harness at $HARNESS (set HARNESS=)"
[[ -f "$HARNESS/build/rootfs.img" || -f "${HK_STATE:-/var/tmp/rtgt-linux-initiator}/build/rootfs.img" ]] \
  || die "the harness guest is not built: run $HARNESS/build.sh"
for t in iptables curl jq; do
  command -v $t >/dev/null || die "$t is needed (apt-get install $t)"
done

# Two free ports: bind 0 and keep what the kernel chose.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1="$(free_port)"; P2="$(free_port)"
while [[ "$P2" = "$P1" ]]; do P2="$(free_port)"; done

WORK="$(mktemp -d /tmp/rtgt-multipath.XXXXXX)"
SOCK="$WORK/rtgt.sock"
RPID="" GPID="" BLOCKED=""
unblock() {
  [[ -n "$BLOCKED" ]] || return 0
  iptables -D INPUT -i lo -p tcp --dport "$BLOCKED" -j DROP 2>/dev/null || true
  iptables -D OUTPUT -o lo -p tcp --sport "$BLOCKED" -j DROP 2>/dev/null || true
  BLOCKED=""
}
cleanup() {
  local rc=$?
  unblock
  [[ -n "$GPID" ]] && kill -0 "$GPID" 2>/dev/null && { kill -TERM -- "-$GPID" 2>/dev/null; sleep 1; kill -KILL -- "-$GPID" 2>/dev/null; }
  [[ -n "$RPID" ]] && kill -0 "$RPID" 2>/dev/null && { kill -TERM "$RPID"; wait "$RPID" 2>/dev/null; }
  if [[ $rc -eq 0 && "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- the target
cat > "$WORK/rtgt.toml" <<EOF
[[backstore]]
name = "shared"
type = "fileio"
path = "$WORK/disk.img"
size = "256M"

[[target]]
iqn = "$IQN"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:$P1"]
mode = "demo"
alua_state = "active_optimized"
alua_preferred = true

[[target.tpg.lun]]
lun = 0
backstore = "shared"

[[target.tpg]]
tag = 2
portals = ["127.0.0.1:$P2"]
mode = "demo"
alua_state = "active_nonoptimized"

[[target.tpg.lun]]
lun = 0
backstore = "shared"
EOF
"$RTGT" check "$WORK/rtgt.toml" >/dev/null || die "rtgt check refused $WORK/rtgt.toml"

start_rtgt() {
  RUST_LOG=info "$RTGT" serve --config "$WORK/rtgt.toml" --control "$SOCK" \
    --state-dir "$WORK/state" >> "$WORK/rtgt.log" 2>&1 &
  RPID=$!
  for _ in $(seq 100); do
    curl -sf --unix-socket "$SOCK" http://rtgt/api/v1/status >/dev/null 2>&1 && return 0
    kill -0 "$RPID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$WORK/rtgt.log"; die "rtgt did not start"
}
start_rtgt
say "rtgt pid $RPID, tpg1 on 127.0.0.1:$P1, tpg2 on 127.0.0.1:$P2, work folder $WORK"

cli() { "$RTGT" --socket "$SOCK" "$@"; }
acli() { cli "$@" >> "$WORK/cli.log" 2>&1 || echo "rtgt $* failed" >> "$WORK/cli-errors.log"; }
# writes TAG: write commands rtgt has received through that tpg
writes() {
  curl -sf --unix-socket "$SOCK" http://rtgt/api/v1/stats \
    | jq -r --arg t "$IQN" --argjson g "$1" \
        '[.ports[] | select(.target == $t and .tpg == $g) | .write_commands] | add // 0'
}
now_ms() { date +%s%3N; }

# expect TAG SINCE_MS: wait until writes arrive through tpg TAG (the new path) and then for a
# 2 s window in which they arrive only there. Prints "SWITCH_MS SETTLED_MS" (from SINCE_MS)
# or fails after 120 s.
expect_path() {
  local tag=$1 since=$2 other=$(( $1 == 1 ? 2 : 1 )) base first="" t w0 o0 w1 o1
  base="$(writes "$tag")"
  while (( $(now_ms) - since < 120000 )); do
    if [[ -z "$first" ]]; then
      (( $(writes "$tag") > base )) && first=$(( $(now_ms) - since ))
      sleep 0.1; continue
    fi
    t=$(now_ms); w0="$(writes "$tag")"; o0="$(writes "$other")"
    sleep 2
    w1="$(writes "$tag")"; o1="$(writes "$other")"
    if (( w1 > w0 && o1 == o0 )); then echo "$first $(( t - since ))"; return 0; fi
  done
  echo "timeout"; return 1
}

# ---------------------------------------------------------------- the guest
JOB="$WORK/job"
mkdir -p "$JOB" "$WORK/runs"
cp "$HERE/multipath.guest.sh" "$JOB/"
printf 'P1=%q\nP2=%q\nIQN=%q\nINITIATOR_A=%q\nINITIATOR_B=%q\n' \
  "$P1" "$P2" "$IQN" "$INITIATOR_A" "$INITIATOR_B" > "$JOB/params.env"
HK_RUNS="$WORK/runs" setsid "$HARNESS/guest-run.sh" "$JOB/multipath.guest.sh" \
  > "$WORK/guest-run.out" 2> "$WORK/guest-run.err" &
GPID=$!

# The guest asks for step N by writing out/req-N ("STEP"); the host answers in out/ack-N:
# "ok SWITCH_MS SETTLED_MS" or "fail WHY".
SHARE="" N=1 FAILED=0 TIMES=()
ANS=""
step() {  # step NAME: do it, then measure which path carries the writes; the answer in ANS
  local name=$1 t expect
  t=$(now_ms)
  case $name in
    move)    acli "/iscsi/$IQN/tpg1" set alua state=active_nonoptimized preferred=0
             acli "/iscsi/$IQN/tpg2" set alua state=active_optimized; expect=2 ;;
    standby) [[ "${WRONG:-0}" = 1 ]] || acli "/iscsi/$IQN/tpg2" set alua state=standby; expect=1 ;;
    back)    acli "/iscsi/$IQN/tpg2" set alua state=active_optimized; expect=2 ;;
    unavail) acli "/iscsi/$IQN/tpg2" set alua state=unavailable; expect=1 ;;
    back2)   acli "/iscsi/$IQN/tpg2" set alua state=active_optimized; expect=2 ;;
    dead)    BLOCKED=$P2
             iptables -I INPUT -i lo -p tcp --dport "$P2" -j DROP
             iptables -I OUTPUT -o lo -p tcp --sport "$P2" -j DROP; expect=1 ;;
    alive)   unblock; expect=2 ;;
    explicit) # SIGHUP with [alua] explicit = true: SET TARGET PORT GROUPS is allowed from now on
             local n; n="$(grep -c 'rtgt: reloaded' "$WORK/rtgt.log" || true)"
             { printf '[alua]\nexplicit = true\n\n'; cat "$WORK/rtgt.toml"; } > "$WORK/rtgt.toml.new"
             mv "$WORK/rtgt.toml.new" "$WORK/rtgt.toml"; kill -HUP "$RPID"
             for _ in $(seq 50); do (( $(grep -c 'rtgt: reloaded' "$WORK/rtgt.log") > n )) && break; sleep 0.1; done
             if (( $(grep -c 'rtgt: reloaded' "$WORK/rtgt.log") > n )); then ANS="ok 0 0"; else ANS="fail no reload"; fi
             return ;;
    stpg)    expect=1 ;;  # the guest has sent SET TARGET PORT GROUPS just before asking
    restart) kill -TERM "$RPID"; wait "$RPID" 2>/dev/null || true
             start_rtgt; expect=1 ;;
    *)       ANS="fail unknown step $name"; return ;;
  esac
  local r
  if r="$(expect_path $expect "$t")"; then ANS="ok $r"; else ANS="fail I/O not only on tpg$expect after 120 s"; fi
  if [[ -s "$WORK/cli-errors.log" ]]; then ANS="fail $(tail -1 "$WORK/cli-errors.log")"; : > "$WORK/cli-errors.log"; fi
}
while kill -0 "$GPID" 2>/dev/null; do
  if [[ -z "$SHARE" ]]; then
    d="$(ls -1d "$WORK"/runs/script-* 2>/dev/null | head -1 || true)"
    [[ -n "$d" && -d "$d/share/out" ]] && { SHARE="$d/share"; say "guest booting, run folder $d"; }
  fi
  if [[ -n "$SHARE" && -f "$SHARE/out/req-$N" ]]; then
    name="$(cat "$SHARE/out/req-$N")"
    say "step $N: $name"
    step "$name" >> "$WORK/steps.log" 2>&1; ans="$ANS"
    extra=""
    if [[ $name = stpg || $name = restart ]]; then
      # what the initiator set with SET TARGET PORT GROUPS is what rtgt runs and saved
      s1="$(cli "/iscsi/$IQN/tpg1" get alua 2>&1 | tr '\n' ' ')"
      s2="$(cli "/iscsi/$IQN/tpg2" get alua 2>&1 | tr '\n' ' ')"
      grep -q 'alua_state = "standby"' "$WORK/rtgt.toml" || extra=" (not saved: $WORK/rtgt.toml)"
      [[ "$s1" == *active_optimized* && "$s2" == *standby* ]] || extra="$extra (rtgt runs: tpg1 $s1, tpg2 $s2)"
      [[ -z "$extra" ]] || ans="fail$extra"
    fi
    say "  -> $ans"
    if [[ $ans == ok* ]]; then read -r _ sw st <<< "$ans"; TIMES+=("$name $sw $st");
    else FAILED=$((FAILED + 1)); TIMES+=("$name FAIL"); fi
    echo "$ans" > "$SHARE/out/.ack-$N" && mv "$SHARE/out/.ack-$N" "$SHARE/out/ack-$N"
    N=$((N + 1))
  fi
  sleep 0.2
done
set +e
wait "$GPID"; GRC=$?
set -e
GPID=""

echo
echo "==================== multipath summary ===================="
[[ -n "$SHARE" && -f "$SHARE/out/script.log" ]] && grep -E ' (PASS|FAIL|SKIP|INFO) ' "$SHARE/out/script.log" | cut -d' ' -f2- | sed 's/^/  guest: /'
echo "failover times (ms from the change on the host until writes arrive on the new path; until"
echo "they arrive only there, over 2 s):"
printf '  %-8s %10s %10s\n' step switch only-new
for t in "${TIMES[@]}"; do printf '  %-8s %10s %10s\n' $t; done
echo "wall time: $((SECONDS - T0))s"
RC=0
[[ $GRC -eq 0 ]] || RC=1
[[ $FAILED -eq 0 ]] || { echo "FAIL host: $FAILED step(s) failed"; RC=1; }
[[ $N -gt 10 ]] || { echo "FAIL host: the guest asked for only $((N - 1)) of 10 steps"; RC=1; }
kill -0 "$RPID" 2>/dev/null || { echo "FAIL rtgt: the daemon died"; RC=1; }
if [[ $RC -eq 0 ]]; then echo "RESULT: PASS"; else
  echo "RESULT: FAIL (guest-run rc=$GRC)$([[ "${WRONG:-0}" = 1 ]] && echo ' - expected: WRONG=1 is the negative control')"; fi
exit $RC
