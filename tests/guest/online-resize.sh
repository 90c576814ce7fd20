#!/bin/bash
# online-resize.sh: grow a LU under a mounted ext4 in a Linux guest, with fio verify running
# (issue 16). Run on the host, as root:
#
#   RTGT=target/release/rtgt tests/guest/online-resize.sh
#
# Starts rtgt (demo-mode portal group, one fileio or ramdisk LU of SIZE0) on a free port of
# 127.0.0.1, boots the Linux initiator harness guest with online-resize.guest.sh (guest-run.sh),
# and when the guest says fio is running on the mounted ext4 (share/out/ready-to-grow) grows the
# LU to SIZE1 with `rtgt /backstores/TYPE/NAME set attribute size=SIZE1` on the daemon's control
# socket, then tells the guest (share/out/grown). The guest rescans, checks the new size,
# resize2fs's, checks df, uses the new space, waits for fio's verify and e2fsck's.
# PASS/FAIL lines per step; exit 0 only if every step passed.
#
# Environment:
#   RTGT=path        the rtgt binary (default: target/release/rtgt of this checkout)
#   HARNESS=dir      the Linux initiator harness (default: ../shared/linux-initiator beside the
#                    checkout, else /work/shared/linux-initiator); its build.sh must have run
#   BACKSTORE=fileio|ramdisk (default fileio; rtgt grows only fileio so far: with ramdisk
#                    the daemon refuses the grow and the run fails)   SIZE0=256M SIZE1=512M
#   FIO_JOBS=2 FIO_SIZE=48M FIO_LOOPS=6   the background fio (must outlast the resize)
#   SKIP_GROW=1      negative control: do not grow; the run must then FAIL (exit 1)
#   KEEP=1           keep the work folder (rtgt log, config, guest logs) even on success
#   ACCEL, MEM, SMP, VM_TIMEOUT: passed to guest-run.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RTGT="$(realpath "${RTGT:-$REPO/target/release/rtgt}")"
if [[ -z "${HARNESS:-}" ]]; then
  HARNESS="$REPO/../shared/linux-initiator"
  [[ -x "$HARNESS/guest-run.sh" ]] || HARNESS=/work/shared/linux-initiator
fi
BACKSTORE="${BACKSTORE:-fileio}"
SIZE0="${SIZE0:-256M}"
SIZE1="${SIZE1:-512M}"
IQN="iqn.2026-11.org.rtgt:online-resize"
INITIATOR_NAME="iqn.2026-11.harness:online-resize"
BS_NAME="grow0"

T0=$SECONDS
say()  { echo "[$(date +%T)] $*"; }
hstep() { say "$*"; echo "$*" >> "$WORK/host-steps"; }   # a host-side PASS/FAIL/SKIP line
die()  { echo "FAIL setup: $*"; echo "RESULT: FAIL"; exit 2; }

[[ $EUID -eq 0 ]] || die "run as root (the harness boots QEMU with /dev/kvm and writes its run folders)"
[[ -x "$RTGT" ]] || die "no rtgt binary at $RTGT (set RTGT=)"
[[ -x "$HARNESS/guest-run.sh" ]] || die "no harness at $HARNESS (set HARNESS=)"
[[ -f "$HARNESS/build/rootfs.img" || -f "${HK_STATE:-/var/tmp/rtgt-linux-initiator}/build/rootfs.img" ]] \
  || die "the harness guest is not built: run $HARNESS/build.sh"
case "$BACKSTORE" in fileio|ramdisk) ;; *) die "BACKSTORE must be fileio or ramdisk" ;; esac
B0=$(numfmt --from=iec "$SIZE0"); B1=$(numfmt --from=iec "$SIZE1")
(( B1 > B0 )) || die "SIZE1 ($SIZE1) must be larger than SIZE0 ($SIZE0)"

WORK="$(mktemp -d /tmp/rtgt-online-resize.XXXXXX)"
SOCK="$WORK/ctl.sock"
RPID="" GPID=""
cleanup() {
  local rc=$?
  [[ -n "$GPID" ]] && kill -0 "$GPID" 2>/dev/null && { kill -TERM -- "-$GPID" 2>/dev/null; sleep 1; kill -KILL -- "-$GPID" 2>/dev/null; }
  [[ -n "$RPID" ]] && kill -0 "$RPID" 2>/dev/null && { kill -TERM "$RPID"; wait "$RPID" 2>/dev/null; }
  if [[ $rc -eq 0 && "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- the target
{
  echo '[[backstore]]'
  echo "name = \"$BS_NAME\""
  echo "type = \"$BACKSTORE\""
  [[ $BACKSTORE == fileio ]] && echo "path = \"$WORK/$BS_NAME.img\""
  echo "size = \"$SIZE0\""
  echo
  echo '[[target]]'
  echo "iqn = \"$IQN\""
  echo
  echo '[[target.tpg]]'
  echo 'tag = 1'
  echo 'portals = ["127.0.0.1:3260"]   # replaced by --listen'
  echo 'mode = "demo"'
  echo
  echo '[[target.tpg.lun]]'
  echo 'lun = 0'
  echo "backstore = \"$BS_NAME\""
} > "$WORK/rtgt.toml"
RUST_LOG="${RTGT_LOG:-info}" "$RTGT" serve --config "$WORK/rtgt.toml" --listen 127.0.0.1:0 \
  --control "$SOCK" --state-dir "$WORK/state" > "$WORK/rtgt.log" 2>&1 &
RPID=$!
PORT=""
for _ in $(seq 100); do
  PORT="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/rtgt.log" | head -1)"
  [[ -n "$PORT" && -S "$SOCK" ]] && break
  kill -0 "$RPID" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$PORT" && -S "$SOCK" ]] || { cat "$WORK/rtgt.log"; die "rtgt did not start"; }
R=("$RTGT" --socket "$SOCK")
say "rtgt $("$RTGT" --version | cut -d' ' -f2) pid $RPID on 127.0.0.1:$PORT, $BACKSTORE LU $SIZE0, work folder $WORK"

# ---------------------------------------------------------------- the guest
JOB="$WORK/job"
mkdir -p "$JOB" "$WORK/runs"
cp "$HERE/online-resize.guest.sh" "$JOB/"
{
  printf 'PORT=%q\nIQN=%q\nINITIATOR_NAME=%q\nSIZE0=%q\nSIZE1=%q\n' "$PORT" "$IQN" "$INITIATOR_NAME" "$B0" "$B1"
  printf 'FIO_JOBS=%q\nFIO_SIZE=%q\nFIO_LOOPS=%q\n' "${FIO_JOBS:-2}" "${FIO_SIZE:-48M}" "${FIO_LOOPS:-6}"
  printf 'GROW_WAIT=%q\nSETTLE=%q\nRESCAN_WAIT=%q\n' "${GROW_WAIT:-180}" "${SETTLE:-5}" "${RESCAN_WAIT:-30}"
} > "$JOB/params.env"
# its own process group, so that cleanup can stop guest-run.sh and its QEMU together
HK_RUNS="$WORK/runs" setsid "$HARNESS/guest-run.sh" "$JOB/online-resize.guest.sh" \
  > "$WORK/guest-run.out" 2> "$WORK/guest-run.err" &
GPID=$!

SHARE=""
GLOG=""
TAILPID=""
grown=0
while kill -0 "$GPID" 2>/dev/null; do
  if [[ -z "$SHARE" ]]; then
    d="$(ls -1d "$WORK"/runs/script-* 2>/dev/null | head -1 || true)"
    if [[ -n "$d" && -d "$d/share/out" ]]; then
      SHARE="$d/share"; GLOG="$SHARE/out/script.log"
      say "guest booting, run folder $d"
      # the guest's step lines, as they come
      tail -n +1 -F --pid="$GPID" "$GLOG" 2>/dev/null | grep --line-buffered -E ' (PASS|FAIL|SKIP|INFO) |GUEST-RESULT|waiting' | sed -u 's/^/  guest: /' &
      TAILPID=$!
    fi
  fi
  if [[ -n "$SHARE" && $grown = 0 && -f "$SHARE/out/ready-to-grow" ]]; then
    grown=1
    if [[ "${SKIP_GROW:-0}" = 1 ]]; then
      hstep "SKIP host-grow: SKIP_GROW=1 (negative control: the guest must now fail)"
      echo "nothing done (SKIP_GROW=1)" > "$SHARE/out/grown"
    else
      t1=$(date +%s.%N)
      if out="$("${R[@]}" "/backstores/$BACKSTORE/$BS_NAME" set attribute "size=$SIZE1" 2>&1)"; then
        t2=$(date +%s.%N)
        now="$("${R[@]}" --json "/backstores/$BACKSTORE/$BS_NAME" info 2>&1 | sed -n 's/.*"size": *"\([^"]*\)".*/\1/p' || true)"
        fsz=""
        [[ $BACKSTORE == fileio ]] && fsz=", backing file $(stat -c %s "$WORK/$BS_NAME.img") bytes"
        hstep "PASS host-grow: rtgt /backstores/$BACKSTORE/$BS_NAME set attribute size=$SIZE1 in $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.2f", b-a}')s; info size=$now$fsz"
        echo "$out" | sed 's/^/    /'
        echo "grew to $SIZE1 (info size=$now$fsz)" > "$SHARE/out/grown"
      else
        hstep "FAIL host-grow: rtgt set attribute size=$SIZE1 refused: $out"
        echo "grow FAILED on the host: $out" > "$SHARE/out/grown"
        HOST_FAIL=1
      fi
    fi
  fi
  sleep 0.5
done
set +e
wait "$GPID"; GRC=$?
set -e
GPID=""
sleep 0.5
if [[ -n "$TAILPID" ]]; then kill "$TAILPID" 2>/dev/null || true; wait "$TAILPID" 2>/dev/null || true; fi

# ---------------------------------------------------------------- verdict
echo
echo "==================== online resize summary ===================="
[[ -f "$WORK/host-steps" ]] && sed 's/^/  host: /' "$WORK/host-steps"
if [[ -n "$GLOG" && -f "$GLOG" ]]; then
  grep -E ' (PASS|FAIL|SKIP|INFO) ' "$GLOG" | cut -d' ' -f2- | sed 's/^/  guest: /'
fi
grep -E 'panicked|ERROR' "$WORK/rtgt.log" | head -5 | sed 's/^/  rtgt log: /' || true
[[ -n "$SHARE" ]] && echo "guest logs : $SHARE/out (logs/, dmesg.txt)"
echo "rtgt log   : $WORK/rtgt.log"
echo "wall time  : $((SECONDS - T0))s"
RC=0
if [[ $grown = 0 ]]; then
  echo "FAIL host-grow: the guest never asked for the grow (guest-run rc=$GRC; $(tail -3 "$WORK/guest-run.err" | tr '\n' ' '))"
  RC=1
fi
[[ "${HOST_FAIL:-0}" = 1 ]] && RC=1
[[ $GRC -eq 0 ]] || RC=1
if ! kill -0 "$RPID" 2>/dev/null; then echo "FAIL rtgt: the daemon died"; RC=1; fi
if [[ $RC -eq 0 ]]; then
  echo "RESULT: PASS ($BACKSTORE LU $SIZE0 -> $SIZE1 under a mounted ext4 with fio verify running)"
else
  echo "RESULT: FAIL (guest-run rc=$GRC)$([[ "${SKIP_GROW:-0}" = 1 ]] && echo ' - expected: SKIP_GROW=1 is the negative control')"
fi
exit $RC
