#!/bin/bash
# vhost.sh: the vhost-user-scsi fabric (`[[vhost]]`) against QEMU's vhost-user-scsi-pci and the
# Linux guest's virtio_scsi, sd and sg drivers, with the same LU exported over iSCSI at once.
# Run on the host, as root:
#
#   cargo build --release -p rtgt && tests/guest/vhost.sh
#
# rtgt serves one controller (LUN 0: `shared`, also iSCSI LUN 0 of a target on 127.0.0.1;
# LUN 3: `fs`) and the guest (vhost.guest.sh, phase 1) checks:
#   - the probe, the disks, sg_inq, sg_readcap, VPD 83h the same through vhost and iSCSI;
#   - an O_DIRECT round trip, fio randwrite + crc32c verify, mkfs.ext4 + files + md5;
#   - one reservation state for both fabrics: registered and reserved over iSCSI, the vhost
#     nexus gets RESERVATION CONFLICT; PREEMPT from the VM fences the iSCSI nexus;
#   - LUN hotplug: the host adds LUN 1 (SIGHUP) and the disk appears in the running guest,
#     removes it and the disk goes;
#   - kill -9 of rtgt during I/O: whether the guest's I/O ends in errors or hangs.
# Then rtgt is restarted and a new guest (phase 2) attaches and verifies what phase 1 had
# acknowledged (a 16 MiB pattern on LUN 0, the files on LUN 3).
# Environment: RTGT=path (default: this checkout's release build), HARNESS=dir, KEEP=1,
# WRONG=1 (negative control: the host does not add LUN 1, so the hotplug check must fail).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
. "$HERE/lib.sh"
RTGT="$(realpath "${RTGT:-$REPO/target/release/rtgt}")"
require_harness
[[ -x "$RTGT" ]] || die "no rtgt binary at $RTGT (cargo build --release -p rtgt)"
command -v curl >/dev/null || die "curl is needed"
T0=$SECONDS
PORT="$(free_port)"
IQN="iqn.2026-12.org.rtgt:vhost-test"
WORK="$(mktemp -d /tmp/rtgt-vhost.XXXXXX)"
VSOCK="$WORK/vm1.sock"
CSOCK="$WORK/rtgt.sock"
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
config() { # config HOTPLUGGED(0|1)
  cat <<EOF
[[backstore]]
name = "shared"
type = "fileio"
path = "$WORK/shared.img"
size = "256M"

[[backstore]]
name = "fs"
type = "fileio"
path = "$WORK/fs.img"
size = "256M"

[[backstore]]
name = "plug"
type = "ramdisk"
size = "64M"

[[target]]
iqn = "$IQN"
[[target.tpg]]
tag = 1
mode = "demo"
portals = ["127.0.0.1:$PORT"]
[[target.tpg.lun]]
lun = 0
backstore = "shared"

[[vhost]]
socket = "$VSOCK"
num_queues = 2
[[vhost.lun]]
lun = 0
backstore = "shared"
[[vhost.lun]]
lun = 3
backstore = "fs"
EOF
  if [[ $1 = 1 ]]; then printf '[[vhost.lun]]\nlun = 1\nbackstore = "plug"\n'; fi
}
config 0 > "$WORK/rtgt.toml"
"$RTGT" check "$WORK/rtgt.toml" >/dev/null || die "rtgt check refused $WORK/rtgt.toml"
start_rtgt() {
  RUST_LOG="${RUST_LOG:-info}" "$RTGT" serve --config "$WORK/rtgt.toml" --control "$CSOCK" \
    --state-dir "$WORK/state" >> "$WORK/rtgt.log" 2>&1 &
  RPID=$!
  for _ in $(seq 100); do
    [[ -S "$VSOCK" ]] && curl -sf --unix-socket "$CSOCK" http://rtgt/api/v1/status >/dev/null 2>&1 && return 0
    kill -0 "$RPID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$WORK/rtgt.log"; die "rtgt did not start"
}
reload() { # reload HOTPLUGGED: write the file, SIGHUP, wait for rtgt to say it reloaded
  local n; n="$(grep -c 'rtgt: reloaded' "$WORK/rtgt.log" || true)"
  config "$1" > "$WORK/rtgt.toml.new" && mv "$WORK/rtgt.toml.new" "$WORK/rtgt.toml"
  kill -HUP "$RPID"
  for _ in $(seq 50); do (( $(grep -c 'rtgt: reloaded' "$WORK/rtgt.log") > n )) && return 0; sleep 0.1; done
  return 1
}
start_rtgt
say "rtgt pid $RPID: vhost on $VSOCK, iSCSI $IQN on 127.0.0.1:$PORT, work folder $WORK"

step() {
  case $1 in
    plug)   if [[ "${WRONG:-0}" = 1 ]]; then ANS="ok (WRONG=1: not added)"; return; fi
            if reload 1; then ANS="ok"; else ANS="fail no reload"; fi ;;
    unplug) if reload 0; then ANS="ok"; else ANS="fail no reload"; fi ;;
    kill)   kill -KILL "$RPID"; wait "$RPID" 2>/dev/null || true; RPID=""; ANS="ok" ;;
    *)      ANS="fail unknown step $1" ;;
  esac
}

QEMU_VHOST="-object memory-backend-memfd,id=mem,size=2048M,share=on -numa node,memdev=mem -chardev socket,id=vhs,path=$VSOCK -device vhost-user-scsi-pci,chardev=vhs,num_queues=2"
guest() { # guest PHASE
  local job="$WORK/job$1"
  mkdir -p "$job"
  printf 'PHASE=%q\nPORT=%q\nIQN=%q\n' "$1" "$PORT" "$IQN" > "$job/params.env"
  [[ $1 = 2 ]] && cp "$WORK/job1-runs"/script-*/share/out/acked.txt "$job/" 2>/dev/null
  MEM=2048 QEMU_EXTRA="$QEMU_VHOST" VM_TIMEOUT=900 run_guest "$job" "$HERE/vhost.guest.sh" "$WORK/guest$1.out"
  set +e
  serve_requests
  local rc=$?
  set -e
  GPID=""
  echo "==================== vhost phase $1 ===================="
  grep -hE ' (PASS|FAIL|INFO) ' "$SHARE/out/script.log" 2>/dev/null | cut -d' ' -f2- | sed 's/^/  guest: /'
  return $rc
}
RC=0
guest 1 || RC=1
# A new daemon on the same files, a new VM: what the first acknowledged is there.
[[ -n "$RPID" ]] && { kill -TERM "$RPID"; wait "$RPID" 2>/dev/null || true; }
start_rtgt
say "rtgt restarted, pid $RPID"
guest 2 || RC=1
kill -0 "$RPID" 2>/dev/null || { echo "FAIL rtgt: the restarted daemon died"; RC=1; }
echo "wall time: $((SECONDS - T0))s"
if [[ $RC -eq 0 ]]; then echo "RESULT: PASS"; else
  echo "RESULT: FAIL$([[ "${WRONG:-0}" = 1 ]] && echo ' - expected: WRONG=1 is the negative control')"; fi
exit $RC
