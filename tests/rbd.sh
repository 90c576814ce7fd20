#!/bin/bash
# The RBD tests against a real, throwaway Ceph cluster (scripts/ceph-dev-cluster.sh):
#   1. the backstore's own tests (crates/rtgt-rbd/tests/cluster.rs),
#   2. the daemon's (crates/rtgt/tests/rbd.rs: two gateways on one image),
#   3. iscsi-test-cu on an RBD LU (tests/conformance.py, label "rbd").
# They are #[ignore]d in a plain `cargo test`; this script runs them with RTGT_CEPH_CONF set.
# Where the cluster cannot start (no ceph packages, no room), everything is reported SKIPPED,
# loudly, never passed. Last line: `rbd: N passed, M failed, K skipped`.
#
#   bash tests/rbd.sh            # CONFORMANCE=0 leaves out step 3; KEEP=1 keeps the cluster dir
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
PROFILE="${PROFILE:---release}"
passed=0 failed=0 skipped=0

summary() { echo "rbd: $passed passed, $failed failed, $skipped skipped"; }

skip_all() {
  # the tests that could not run: 10 cargo tests and the conformance run
  local n
  n=$(cat crates/rtgt-rbd/tests/cluster.rs crates/rtgt/tests/rbd.rs | grep -c '#\[ignore = "needs a Ceph cluster')
  skipped=$((n + 1))
  echo "SKIP: rbd tests: $1"
  summary
  exit 0
}

for b in ceph-mon ceph-osd ceph-mgr rbd; do
  command -v "$b" >/dev/null || skip_all "$b is not installed (apt-get install ceph)"
done
# (with the headers, rtgt-rbd's own test fails where bindgen could not use them)
[[ -f /usr/include/rbd/librbd.h ]] || skip_all "librbd's headers are not installed (apt-get install librbd-dev libclang-dev)"

DIR="$(mktemp -d /tmp/rtgt-ceph.XXXXXX)"
cleanup() {
  [[ -n "${RPID:-}" ]] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
  bash scripts/ceph-dev-cluster.sh stop "$DIR/c" >/dev/null 2>&1
  bash scripts/ceph-dev-cluster.sh stop "$DIR/c2" >/dev/null 2>&1
  if [[ "${KEEP:-0}" == 1 || $failed -gt 0 ]]; then echo "cluster logs kept in $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

echo "== starting a Ceph cluster in $DIR/c"
if ! conf="$(timeout 300 bash scripts/ceph-dev-cluster.sh start "$DIR/c" 2>"$DIR/cluster.err" | tail -1)" || [[ ! -f "$conf" ]]; then
  cat "$DIR/cluster.err" | tail -20
  skip_all "the Ceph cluster could not start on this machine (see above)"
fi
export RTGT_CEPH_CONF="$conf"
echo "cluster: $conf"

# Run one cargo test binary's ignored tests (HARNESS: more test-harness
# arguments, e.g. a filter); add up its result line.
cargo_tests() {
  local log="$DIR/$1.log"; shift
  timeout 900 cargo test $PROFILE "$@" -- --ignored ${HARNESS:-} 2>&1 | tee "$log"
  local line
  line="$(grep '^test result:' "$log" | tail -1)"
  # no result, or a binary that ran nothing (built without librbd): a failure
  if [[ -z "$line" || "$(awk '{print $4 + $6}' <<<"$line")" == 0 ]]; then
    echo "FAIL: cargo test $* ran no test"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + $(awk '{print $4}' <<<"$line")))
  failed=$((failed + $(awk '{print $6}' <<<"$line")))
}

echo "== the rbd backstore against the cluster"
cargo_tests backstore -p rtgt-rbd --test cluster
echo "== the daemon with rbd LUs"
HARNESS="--skip cluster_faults" cargo_tests daemon -p rtgt --test rbd

echo "== cluster faults (a cluster of its own: two OSDs, pool size 2)"
if conf2="$(OSDS=2 timeout 300 bash scripts/ceph-dev-cluster.sh start "$DIR/c2" 2>"$DIR/cluster2.err" | tail -1)" && [[ -f "$conf2" ]]; then
  RTGT_CEPH_CONF="$conf2" RTGT_CEPH_DIR="$DIR/c2" HARNESS=cluster_faults cargo_tests faults -p rtgt --test rbd
  bash scripts/ceph-dev-cluster.sh stop "$DIR/c2" >/dev/null 2>&1
else
  tail -20 "$DIR/cluster2.err"
  echo "FAIL: the second cluster did not start"
  failed=$((failed + 1))
fi

if [[ "${CONFORMANCE:-1}" == 1 ]]; then
  echo "== iscsi-test-cu on an rbd LU"
  timeout 120 rbd -c "$conf" create --size 1G rbd/conformance
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  iqn="iqn.2026-12.org.rtgt:rbd-conformance"
  cat >"$DIR/rtgt.toml" <<EOF
[[backstore]]
name = "ceph"
type = "rbd"
pool = "rbd"
image = "conformance"
ceph_conf = "$conf"

[[target]]
iqn = "$iqn"
[[target.tpg]]
tag = 1
portals = ["127.0.0.1:$port"]
mode = "demo"
[[target.tpg.lun]]
lun = 0
backstore = "ceph"
EOF
  target/release/rtgt serve --config "$DIR/rtgt.toml" --control "$DIR/ctl.sock" >"$DIR/rtgt.log" 2>&1 &
  RPID=$!
  for _ in $(seq 100); do grep -q "listening on" "$DIR/rtgt.log" && break; sleep 0.1; done
  timeout 2000 python3 tests/conformance.py --url "iscsi://127.0.0.1:$port/$iqn/0" --backstore rbd \
    --timeout 180 --budget 1800 --log-dir "$DIR/conformance" 2>&1 | tee "$DIR/conformance.out"
  read -r kp kf ks < <(sed -n 's/^conformance: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p' "$DIR/conformance.out" | tail -1 | grep . || echo "0 1 0")
  passed=$((passed + kp)) failed=$((failed + kf)) skipped=$((skipped + ks))
  kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; RPID=""
fi

summary
[[ $failed -eq 0 ]]
