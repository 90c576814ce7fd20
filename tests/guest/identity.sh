#!/bin/bash
# identity.sh: the LU identity set in rtgt's configuration file is what the Linux initiator's
# sd/sg drivers and udev report, and it survives a restart of the daemon (issue 16). Run on the
# host, as root:
#
#   RTGT=target/release/rtgt tests/guest/identity.sh
#
# Serves two ramdisk LUs whose [[backstore]] sets vendor, product, revision, serial and naa (one
# NAA 6 of 32 digits, one NAA 5 of 16), boots the Linux initiator harness guest with
# identity.guest.sh, which logs in and compares sg_inq, sg_vpd -p sn, sg_vpd -p di, sysfs
# (vendor, model, rev, wwid) and udev's scsi_id (the multipath WWID) with the file's values. The
# host then kill -9s rtgt and starts it again on the same port and configuration; the guest's
# session recovers and every value is read again. PASS/FAIL lines; exit 0 only if all passed.
#
# Environment:
#   RTGT=path   the rtgt binary (default: target/release/rtgt of this checkout)
#   HARNESS=dir the Linux initiator harness (default: ../shared/linux-initiator beside the
#               checkout, else /work/shared/linux-initiator); its build.sh must have run
#   WRONG=1     negative control: the guest is told a serial the file does not set; must FAIL
#   KEEP=1      keep the work folder even on success
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RTGT="$(realpath "${RTGT:-$REPO/target/release/rtgt}")"
if [[ -z "${HARNESS:-}" ]]; then
  HARNESS="$REPO/../shared/linux-initiator"
  [[ -x "$HARNESS/guest-run.sh" ]] || HARNESS=/work/shared/linux-initiator
fi
IQN="iqn.2026-12.org.rtgt:identity"
INITIATOR_NAME="iqn.2026-12.harness:identity"
# The identities: LUN 0 and LUN 1 (vendor|product|revision|serial|naa).
ID0="ACME|VAULT-9000|0042|ACME-SN-000123|6001405aabbccddeeff0011223344556"
ID1="OLDTGT|LEGACY DISK|1.0|beaf11|5000c50012345678"

T0=$SECONDS
say() { echo "[$(date +%T)] $*"; }
die() { echo "FAIL setup: $*"; echo "RESULT: FAIL"; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root"
[[ -x "$RTGT" ]] || die "no rtgt binary at $RTGT (set RTGT=)"
[[ -x "$HARNESS/guest-run.sh" ]] || die "no harness at $HARNESS (set HARNESS=)"
[[ -f "$HARNESS/build/rootfs.img" || -f "${HK_STATE:-/var/tmp/rtgt-linux-initiator}/build/rootfs.img" ]] \
  || die "the harness guest is not built: run $HARNESS/build.sh"

WORK="$(mktemp -d /tmp/rtgt-identity.XXXXXX)"
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
  n=0
  for id in "$ID0" "$ID1"; do
    IFS='|' read -r v p r s a <<< "$id"
    printf '[[backstore]]\nname = "id%d"\ntype = "ramdisk"\nsize = "64M"\n' "$n"
    printf 'vendor = "%s"\nproduct = "%s"\nrevision = "%s"\nserial = "%s"\nnaa = "%s"\n\n' "$v" "$p" "$r" "$s" "$a"
    n=$((n + 1))
  done
  printf '[[target]]\niqn = "%s"\n\n[[target.tpg]]\ntag = 1\nportals = ["127.0.0.1:3260"]\nmode = "demo"\n\n' "$IQN"
  printf '[[target.tpg.lun]]\nlun = 0\nbackstore = "id0"\n\n[[target.tpg.lun]]\nlun = 1\nbackstore = "id1"\n'
} > "$WORK/rtgt.toml"
"$RTGT" check "$WORK/rtgt.toml" >/dev/null || die "rtgt check refused $WORK/rtgt.toml"

start_rtgt() {  # $1: listen address
  RUST_LOG=info "$RTGT" serve --config "$WORK/rtgt.toml" --listen "$1" \
    --state-dir "$WORK/state" >> "$WORK/rtgt.log" 2>&1 &
  RPID=$!
}
start_rtgt 127.0.0.1:0
PORT=""
for _ in $(seq 100); do
  PORT="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/rtgt.log" | head -1)"
  [[ -n "$PORT" ]] && break
  kill -0 "$RPID" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$PORT" ]] || { cat "$WORK/rtgt.log"; die "rtgt did not start"; }
say "rtgt pid $RPID on 127.0.0.1:$PORT, work folder $WORK"

# ---------------------------------------------------------------- the guest
JOB="$WORK/job"
mkdir -p "$JOB" "$WORK/runs"
cp "$HERE/identity.guest.sh" "$JOB/"
EXP0="$ID0"
[[ "${WRONG:-0}" = 1 ]] && EXP0="${ID0/ACME-SN-000123/ACME-SN-999999}"
printf 'PORT=%q\nIQN=%q\nINITIATOR_NAME=%q\nID0=%q\nID1=%q\n' "$PORT" "$IQN" "$INITIATOR_NAME" "$EXP0" "$ID1" > "$JOB/params.env"
HK_RUNS="$WORK/runs" setsid "$HARNESS/guest-run.sh" "$JOB/identity.guest.sh" \
  > "$WORK/guest-run.out" 2> "$WORK/guest-run.err" &
GPID=$!

SHARE="" restarted=0
while kill -0 "$GPID" 2>/dev/null; do
  if [[ -z "$SHARE" ]]; then
    d="$(ls -1d "$WORK"/runs/script-* 2>/dev/null | head -1 || true)"
    [[ -n "$d" && -d "$d/share/out" ]] && { SHARE="$d/share"; say "guest booting, run folder $d"; }
  fi
  if [[ -n "$SHARE" && $restarted = 0 && -f "$SHARE/out/restart-now" ]]; then
    restarted=1
    kill -KILL "$RPID"; wait "$RPID" 2>/dev/null || true
    start_rtgt "127.0.0.1:$PORT"
    for _ in $(seq 100); do
      [[ "$(grep -c "listening on 127.0.0.1:$PORT" "$WORK/rtgt.log")" -ge 2 ]] && break
      sleep 0.1
    done
    say "rtgt killed (-9) and started again: pid $RPID"
    echo "restarted" > "$SHARE/out/restarted"
  fi
  sleep 0.5
done
set +e
wait "$GPID"; GRC=$?
set -e
GPID=""

echo
echo "==================== identity summary ===================="
[[ -n "$SHARE" && -f "$SHARE/out/script.log" ]] && grep -E ' (PASS|FAIL|SKIP|INFO) ' "$SHARE/out/script.log" | cut -d' ' -f2- | sed 's/^/  guest: /'
echo "wall time: $((SECONDS - T0))s"
RC=0
[[ $GRC -eq 0 ]] || RC=1
[[ $restarted = 1 ]] || { echo "FAIL restart: the guest never asked for the restart"; RC=1; }
kill -0 "$RPID" 2>/dev/null || { echo "FAIL rtgt: the daemon died"; RC=1; }
if [[ $RC -eq 0 ]]; then echo "RESULT: PASS"; else
  echo "RESULT: FAIL (guest-run rc=$GRC)$([[ "${WRONG:-0}" = 1 ]] && echo ' - expected: WRONG=1 is the negative control')"; fi
exit $RC
