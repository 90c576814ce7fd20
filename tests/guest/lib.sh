# lib.sh: what the host halves of the guest tests (and bench/vhost.sh) share. Source it after
# setting REPO (the checkout); it sets HARNESS and defines say, die, require_harness,
# free_port, run_guest and serve_requests.
#
# The guest half asks the host for a step by writing out/req-N ("STEP ARGS"); the host runs
# `step STEP ARGS` (the test defines it; it sets ANS) and answers in out/ack-N: "ok ..." or
# "fail WHY". lib.guest.sh has the guest's side (`ask`).

if [[ -z "${HARNESS:-}" ]]; then
  HARNESS="$REPO/../shared/linux-initiator"
  [[ -x "$HARNESS/guest-run.sh" ]] || HARNESS=/work/shared/linux-initiator
fi
say() { echo "[$(date +%T)] $*"; }
die() { echo "FAIL setup: $*"; echo "RESULT: FAIL"; exit 2; }

# Checks every guest test needs before it starts: root, the harness and its built guest.
require_harness() {
  [[ $EUID -eq 0 ]] || die "run as root"
  [[ -x "$HARNESS/guest-run.sh" ]] || die "no harness at $HARNESS (set HARNESS=)"
  [[ -f "$HARNESS/build/rootfs.img" || -f "${HK_STATE:-/var/tmp/rtgt-linux-initiator}/build/rootfs.img" ]] \
    || die "the harness guest is not built: run $HARNESS/build.sh"
}

# A free TCP port on 127.0.0.1: bind 0 and keep what the kernel chose.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

GUEST_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# run_guest JOB SCRIPT LOG: boot the guest in the background on the job folder JOB (the guest
# script at path SCRIPT and lib.guest.sh are copied in) with runs under JOB-runs (RUNS_DIR);
# sets GPID, and SHARE once the guest's shared folder is there.
run_guest() {
  local job=$1 script=$2 log=$3
  mkdir -p "$job" "$job-runs"
  cp "$script" "$GUEST_LIB_DIR/lib.guest.sh" "$job/"
  RUNS_DIR="$(cd "$job" && pwd)-runs"
  HK_RUNS="$RUNS_DIR" setsid "$HARNESS/guest-run.sh" "$job/$(basename "$script")" > "$log" 2>&1 &
  GPID=$!
  SHARE="" REQ=1
}

# Answer the guest's requests until it powers off; returns guest-run's exit status.
serve_requests() {
  local d name ans
  while kill -0 "$GPID" 2>/dev/null; do
    if [[ -z "$SHARE" ]]; then
      d="$(ls -1td "$RUNS_DIR"/script-* 2>/dev/null | head -1 || true)"
      [[ -n "$d" && -d "$d/share/out" ]] && { SHARE="$d/share"; say "guest booting, run folder $d"; }
    fi
    if [[ -n "$SHARE" && -f "$SHARE/out/req-$REQ" ]]; then
      name="$(cat "$SHARE/out/req-$REQ")"
      say "step $REQ: $name"
      ANS="fail no answer"
      # shellcheck disable=SC2086
      step $name
      ans="$ANS"
      say "  -> $ans"
      echo "$ans" > "$SHARE/out/.ack-$REQ" && mv "$SHARE/out/.ack-$REQ" "$SHARE/out/ack-$REQ"
      REQ=$((REQ + 1))
    fi
    sleep 0.2
  done
  wait "$GPID"
}
