#!/bin/bash
# Install what the tests need on a Debian/Ubuntu machine (as root): the
# initiators the tests drive the daemon with, losetup for the blockio LUN,
# tgt as the benchmark's peer, librbd and a Ceph cluster's daemons for the
# rbd backstore, and QEMU 7.2's iSCSI driver unpacked under
# /tmp/qemu72 (nothing of QEMU is installed).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v iscsi-test-cu >/dev/null || need+=(libiscsi-bin)
command -v losetup >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
command -v tgtd >/dev/null || need+=(tgt)
command -v sg_inq >/dev/null || need+=(sg3-utils)
command -v pgrep >/dev/null || need+=(procps)
# tests/api_schema.sh installs schemathesis from PyPI into a venv
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v curl >/dev/null || need+=(curl)
# the rbd backstore: librbd's headers and libclang (bindgen) to build it,
# and a Ceph cluster (mon, mgr, osd) for tests/rbd.sh
[ -f /usr/include/rbd/librbd.h ] || need+=(librbd-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
for b in ceph-mon ceph-mgr ceph-osd; do command -v $b >/dev/null || need+=($b); done
command -v rbd >/dev/null || need+=(ceph-common)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing: ${need[*]} (install them, or run this as root on Debian/Ubuntu)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash .ci/qemu72.sh /tmp/qemu72
