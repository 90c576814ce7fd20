#!/bin/bash
# Unpack (not install) Debian 12's qemu-img/qemu-io 7.2 and its iSCSI block
# driver into DIR (default /tmp/qemu72), as docs/benchmarking.md describes.
# The machine's own qemu-utils may be another version with no iSCSI module;
# the integration tests (RTGT_QEMU72) and bench/run.sh use this copy.
set -euo pipefail
dir=${1:-/tmp/qemu72}
root=$dir/root
if [ ! -x "$root/usr/bin/qemu-io" ] || [ ! -f "$root/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so" ]; then
    mkdir -p "$dir"
    cd "$dir"
    rm -f ./*.deb
    # as root apt would hand the download to user _apt, who cannot write here
    get() { apt-get download -qq -o APT::Sandbox::User=root qemu-utils/bookworm qemu-block-extra/bookworm; }
    # a fresh machine may have no package lists yet
    get || { apt-get update -qq && get; }
    for f in ./*.deb; do dpkg -x "$f" root; done
fi
# it must run here: its shared libraries are those of the machine
QEMU_MODULE_DIR=$root/usr/lib/x86_64-linux-gnu/qemu "$root/usr/bin/qemu-img" --version >/dev/null
echo "qemu 7.2 with the iSCSI driver in $root"
