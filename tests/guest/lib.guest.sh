# lib.guest.sh: what the guest halves of the guest tests share (sourced inside the guest). One
# "PASS|FAIL|INFO step: detail" line per check; `finish` exits 0 only if nothing failed.
OUT=/mnt/harness/out
mkdir -p "$OUT/logs"
NFAIL=0
REQ=0
say()  { echo "$(date +%T) $*"; }
pass() { say "PASS $1: $2"; }
fail() { say "FAIL $1: $2"; NFAIL=$((NFAIL + 1)); }
info() { say "INFO $1: $2"; }
finish() {
    dmesg > "$OUT/dmesg.txt"
    if [ "$NFAIL" -eq 0 ]; then say "GUEST-RESULT PASS"; exit 0; fi
    say "GUEST-RESULT FAIL ($NFAIL failed)"; exit 1
}
# ask STEP [ARGS]: have the host do STEP (see lib.sh); waits up to 180 s; the answer in $ACK.
ask() {
    REQ=$((REQ + 1))
    echo "$*" > "$OUT/.req-$REQ" && mv "$OUT/.req-$REQ" "$OUT/req-$REQ"   # whole, or not there
    local i
    for i in $(seq 900); do [ -f "$OUT/ack-$REQ" ] && break; sleep 0.2; done
    ACK="$(cat "$OUT/ack-$REQ" 2>/dev/null)"
    case "$ACK" in
        ok*) return 0 ;;
        "")  ACK="no answer from the host in 180 s"; return 1 ;;
        *)   return 1 ;;
    esac
}
