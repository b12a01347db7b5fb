#!/usr/bin/env bash
# Builds the QEMU TCG plugin that counts guest instructions (see insn.c, and
# /work/shared/qemu-insn/README.md for the method). insn.c declares the few plugin
# entry points it uses itself, so neither qemu-plugin.h nor glib headers are needed:
# only a host C compiler (Debian 12 packages no qemu-plugin.h anyway: apt-cache search
# finds none). Output: target/qemu-insn/libinsn.so (or $1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(dirname "$here")/../target/qemu-insn/libinsn.so}
out=$(realpath -m "$out")
mkdir -p "$(dirname "$out")"
if [[ ! -f $out || $here/insn.c -nt $out ]]; then
    ${CC:-gcc} -shared -fPIC -O2 -Wall -o "$out" "$here/insn.c"
fi
echo "$out"
