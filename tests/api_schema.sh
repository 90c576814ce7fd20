#!/bin/bash
# Property-based test of the control API against its own OpenAPI document:
# start a daemon, bridge its control socket to TCP, and let schemathesis
# drive every operation /openapi.json lists with generated valid and invalid
# input. Fails on any 5xx and on any response the document does not allow
# (status code, content type, body schema).
#
#   RTGT=path/to/rtgt     the binary (default: the release build, else the debug one)
#   API_MAX_EXAMPLES=N    test cases per operation and phase (default 100)
#   API_SEED=N            hypothesis seed (default fixed; "random" for none)
#   API_VENV=DIR          where schemathesis is installed (created if missing)
#   API_REPORT_DIR=DIR    keep schemathesis' JUnit and HAR reports there
#
# As root the daemon runs as nobody, so that generated fileio paths cannot
# create files outside the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=${SCHEMATHESIS_VERSION:-4.32.5}
venv=${API_VENV:-/opt/rtgt-ci-venv}
max_examples=${API_MAX_EXAMPLES:-100}
seed=${API_SEED:-20261101}

rtgt=${RTGT:-}
if [ -z "$rtgt" ]; then
    for c in "${CARGO_TARGET_DIR:-target}"/{release,debug}/rtgt; do
        if [ -x "$c" ]; then rtgt=$c; break; fi
    done
fi
if [ -z "$rtgt" ] || [ ! -x "$rtgt" ]; then
    echo "api schema: no rtgt binary (build it, or set RTGT=path)" >&2
    echo "api schema: 0 passed, 1 failed"
    exit 1
fi
rtgt=$(realpath "$rtgt")

# schemathesis from PyPI in a venv (Debian 12's python is externally managed)
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION"; then
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        else
            echo "api schema: python3 cannot make a venv (install python3-venv)" >&2
            echo "api schema: 0 passed, 1 failed"
            exit 1
        fi
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d /tmp/rtgt-api-schema.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/daemon"
# Objects for the generated requests to find: the path and body parameters
# below name them (and some that do not exist) half of the time.
iqn=iqn.2026-11.org.rtgt:api
host=iqn.2026-11.org.rtgt:host
cat > "$work/daemon/rtgt.toml" <<TOML
[[backstore]]
name = "r0"
type = "ramdisk"
size = "64M"

[[backstore]]
name = "r1"
type = "ramdisk"
size = "1M"

[[target]]
iqn = "$iqn"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "acl"

[[target.tpg.lun]]
lun = 0
backstore = "r0"

[[target.tpg.acl]]
initiator = "$host"

[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 0
TOML
secret="$work/daemon/chap.secret"
printf 'api-secret-0123' > "$secret"
chmod 0600 "$secret"
cat > "$work/schemathesis.toml" <<TOML
[dictionaries.iqn]
values = ["$iqn", "IQN.2026-11.ORG.RTGT:API", "iqn.2026-11.org.rtgt:new", "eui.0123456789abcdef", "naa.0123456789abcdef"]
[dictionaries.initiator]
values = ["$host", "iqn.1993-08.org.debian:01:other"]
[dictionaries.tag]
values = [1, 2, 0, 65535]
[dictionaries.lun]
values = [0, 1, 16383, 16384]
[dictionaries.backstore]
values = ["r0", "r1", "n0", "n1", "n2", "f0", "f1", "bad name"]
[dictionaries.size]
values = ["1M", "64M", "4K", "1000", "1T", "16384T", "0", "18446744073709551615"]
[dictionaries.path]
values = ["$work/daemon/f0.img", "$work/daemon/f1.img", "$work/daemon/missing/f1.img", "$work/daemon", "/dev/null", "relative.img"]
[dictionaries.address]
values = ["127.0.0.1:0", "127.0.0.1", "[::1]:0", "192.0.2.1:3260", "nonsense:99999"]
[dictionaries.userid]
values = ["api-user"]
[dictionaries.password]
values = ["api-secret-0123", "short"]
[dictionaries.password_file]
values = ["$secret", "$work/daemon/rtgt.toml", "/nonexistent"]

[parameters]
"path.iqn" = { dictionary = "iqn", probability = 0.6 }
"path.initiator" = { dictionary = "initiator", probability = 0.6 }
"path.tag" = { dictionary = "tag", probability = 0.6 }
"path.lun" = { dictionary = "lun", probability = 0.5 }
"path.mapped_lun" = { dictionary = "lun", probability = 0.5 }
"path.name" = { dictionary = "backstore", probability = 0.6 }
"path.address" = { dictionary = "address", probability = 0.5 }
"body.iqn" = { dictionary = "iqn", probability = 0.6 }
"body.initiator" = { dictionary = "initiator", probability = 0.6 }
"body.tag" = { dictionary = "tag", probability = 0.5 }
"body.lun" = { dictionary = "lun", probability = 0.5 }
"body.tpg_lun" = { dictionary = "lun", probability = 0.6 }
"body.mapped_lun" = { dictionary = "lun", probability = 0.5 }
"body.name" = { dictionary = "backstore", probability = 0.8 }
"body.backstore" = { dictionary = "backstore", probability = 0.6 }
"body.size" = { dictionary = "size", probability = 0.6 }
"body.path" = { dictionary = "path", probability = 0.7 }
"body.address" = { dictionary = "address", probability = 0.6 }
"body.userid" = { dictionary = "userid", probability = 0.5 }
"body.password" = { dictionary = "password", probability = 0.5 }
"body.mutual_password" = { dictionary = "password", probability = 0.5 }
"body.password_file" = { dictionary = "password_file", probability = 0.5 }
TOML
run_as=()
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
    chown -R nobody "$work/daemon"
    run_as=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --)
    # where nobody can run it even if the checkout is private
    install -m 0755 "$rtgt" "$work/rtgt"
    rtgt=$work/rtgt
fi
(
    cd "$work/daemon"
    exec env HOME="$work/daemon" XDG_RUNTIME_DIR="$work/daemon" \
        "${run_as[@]}" "$rtgt" serve --config "$work/daemon/rtgt.toml" \
        --listen 127.0.0.1:0 --state-dir "$work/daemon/state" \
        --control "$work/daemon/ctl.sock"
) > "$work/daemon.log" 2>&1 &
pids+=($!)
daemon=$!

# The Unix socket as a TCP port (schemathesis speaks only TCP).
python3 - "$work/daemon/ctl.sock" "$work/port" > "$work/proxy.log" 2>&1 <<'PY' &
import asyncio, os, sys

sock, portfile = sys.argv[1], sys.argv[2]

async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass

async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_unix_connection(sock)
    except OSError as e:
        print(f"proxy: {e}", flush=True)
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(portfile + ".tmp", portfile)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
PY
pids+=($!)

for _ in $(seq 100); do
    [ -S "$work/daemon/ctl.sock" ] && [ -s "$work/port" ] && break
    if ! kill -0 "$daemon" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ ! -S "$work/daemon/ctl.sock" ] || [ ! -s "$work/port" ]; then
    echo "api schema: the daemon or the proxy did not come up" >&2
    cat "$work/daemon.log" "$work/proxy.log" >&2
    echo "api schema: 0 passed, 1 failed"
    exit 1
fi
port=$(cat "$work/port")
base="http://127.0.0.1:$port"

extra=()
[ "$seed" != random ] && extra+=(--seed "$seed")
# Operations that take the seeded objects away wholesale run last, in a
# pass of their own, so that the first pass finds objects to work on.
destructive=(put_config delete_target delete_tpg)
status=0
start=$SECONDS
cases=0
failed=0
operations=0
pass() {
    local name=$1
    shift
    local report=()
    if [ -n "${API_REPORT_DIR:-}" ]; then
        mkdir -p "$API_REPORT_DIR/$name"
        report=(--report junit,har --report-dir "$(realpath "$API_REPORT_DIR/$name")")
    fi
    echo "== api schema: $name"
    local rc=0
    # (hypothesis would keep an example database in the working directory)
    (cd "$work" && timeout 900 "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" \
        run "$base/openapi.json" \
        --url "$base" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --mode all \
        --phases examples,coverage,fuzzing \
        --max-examples "$max_examples" \
        --workers 2 \
        --request-timeout 20 \
        --generation-database none \
        --suppress-health-check all \
        --no-color \
        "${extra[@]}" "${report[@]}" "$@") > "$work/$name.log" 2>&1 || rc=$?
    # failures in full; the rest of the report from its summary on
    if [ "$rc" -ne 0 ]; then
        # failures and errors (a network error names its operation and
        # what the connection did) in full, else the end of the log
        if grep -q '= FAILURES =\|= ERRORS =' "$work/$name.log"; then
            sed -n '/= \(FAILURES\|ERRORS\) =/,$p' "$work/$name.log"
        else
            tail -40 "$work/$name.log"
        fi
        status=1
    else
        sed -n '/= SUMMARY =/,$p' "$work/$name.log"
    fi
    local line
    line=$(sed -n 's/^ *\([0-9]*\) generated, \(.*\)$/\1 \2/p' "$work/$name.log" | tail -1)
    cases=$((cases + ${line%% *}))
    if [[ "$line" =~ ([0-9]+)\ found ]]; then failed=$((failed + BASH_REMATCH[1])); fi
    if [ "$rc" -ne 0 ] && [[ ! "$line" =~ found ]]; then failed=$((failed + 1)); fi
    local n
    n=$(sed -n 's/^ *Tested: \([0-9]*\)$/\1/p' "$work/$name.log" | tail -1)
    operations=$((operations + ${n:-0}))
}
pass main $(printf -- '--exclude-operation-id %s ' "${destructive[@]}")
pass destructive $(printf -- '--include-operation-id %s ' "${destructive[@]}")
elapsed=$((SECONDS - start))

if ! kill -0 "$daemon" 2>/dev/null; then
    echo "api schema: the daemon died during the run:" >&2
    tail -30 "$work/daemon.log" >&2
    status=1
fi
if grep -q 'panicked' "$work/daemon.log"; then
    echo "api schema: the daemon panicked:" >&2
    grep -A5 'panicked' "$work/daemon.log" | head -40 >&2
    status=1
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
rss=$(awk '/^VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$daemon/status" 2>/dev/null || echo "?")
echo "api schema: $operations operations, $cases generated cases, $((cases - failed)) passed, $failed failed (${elapsed}s, daemon peak RSS $rss)"
exit "$status"
