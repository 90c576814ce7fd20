#!/bin/bash
# vhost.sh: the vhost-user-scsi fabric (issue 18, work in progress) against QEMU's
# vhost-user-scsi-pci and the Linux guest's virtio_scsi + sd drivers. Until `[[vhost]]` is in the
# daemon's configuration it serves rtgt-vhost's development example (one RAM LU). Run on the
# host, as root:
#
#   cargo build --release -p rtgt-vhost --example ram && tests/guest/vhost.sh
#
# The guest (vhost.guest.sh) checks that the probe finishes, the disk appears, sg_inq, the
# capacity, an 8 MiB O_DIRECT round trip, fio randwrite + crc32c verify, and PR IN.
# Environment: HARNESS=dir (as the other guest tests), SERVER=path (default: the example of
# this checkout's release build), KEEP=1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SERVER="$(realpath "${SERVER:-$REPO/target/release/examples/ram}")"
if [[ -z "${HARNESS:-}" ]]; then
  HARNESS="$REPO/../shared/linux-initiator"
  [[ -x "$HARNESS/guest-run.sh" ]] || HARNESS=/work/shared/linux-initiator
fi
die() { echo "FAIL setup: $*"; echo "RESULT: FAIL"; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root"
[[ -x "$SERVER" ]] || die "no server at $SERVER (cargo build --release -p rtgt-vhost --example ram)"
[[ -x "$HARNESS/guest-run.sh" ]] || die "no harness at $HARNESS (set HARNESS=)"
MIB=256
WORK="$(mktemp -d /tmp/rtgt-vhost.XXXXXX)"
SOCK="$WORK/vhost.sock"
SPID=""
cleanup() {
  local rc=$?
  [[ -n "$SPID" ]] && kill "$SPID" 2>/dev/null
  if [[ $rc -eq 0 && "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
  exit $rc
}
trap cleanup EXIT
RUST_LOG=rtgt_vhost=info "$SERVER" "$SOCK" "$MIB" > "$WORK/server.log" 2>&1 &
SPID=$!
for _ in $(seq 50); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
[[ -S "$SOCK" ]] || { cat "$WORK/server.log"; die "no socket at $SOCK"; }
mkdir -p "$WORK/job" "$WORK/runs"
cp "$HERE/vhost.guest.sh" "$WORK/job/"
echo "SIZE_BYTES=$((MIB << 20))" > "$WORK/job/params.env"
sed -i '2i . "$(dirname "$0")/params.env"' "$WORK/job/vhost.guest.sh"
set +e
MEM=2048 HK_RUNS="$WORK/runs" \
  QEMU_EXTRA="-object memory-backend-memfd,id=mem,size=2048M,share=on -numa node,memdev=mem -chardev socket,id=vhs,path=$SOCK -device vhost-user-scsi-pci,chardev=vhs,num_queues=2" \
  "$HARNESS/guest-run.sh" "$WORK/job/vhost.guest.sh" > "$WORK/guest-run.out" 2>&1
GRC=$?
set -e
echo "==================== vhost summary ===================="
grep -hE ' (PASS|FAIL|INFO) ' "$WORK"/runs/script-*/share/out/script.log 2>/dev/null | cut -d' ' -f2- | sed 's/^/  guest: /'
kill -0 "$SPID" 2>/dev/null || { echo "FAIL server: it died"; GRC=1; }
if [[ $GRC -eq 0 ]]; then echo "RESULT: PASS"; else echo "RESULT: FAIL (guest-run rc=$GRC)"; fi
exit $GRC
