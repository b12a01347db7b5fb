#!/usr/bin/env bash
# Builds a QEMU TCG plugin of this folder and prints its path:
#   tests/qemu-insn/build.sh [NAME]
# NAME is insn (default: counts guest instructions, see insn.c, and
# /work/shared/qemu-insn/README.md for the method) or prof (instructions per
# translation block, for tests/qemu/insn-profile.sh). plugin_abi.h declares the few
# plugin entry points they use, so neither qemu-plugin.h nor glib headers are needed:
# only a host C compiler (Debian 12 packages no qemu-plugin.h anyway: apt-cache search
# finds none). Output: target/qemu-insn/libNAME.so.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${1:-insn}
[[ -f $here/$name.c ]] || { echo "build.sh: no plugin $name ($here/$name.c)" >&2; exit 2; }
out=$(realpath -m "$here/../../target/qemu-insn/lib$name.so")
mkdir -p "$(dirname "$out")"
if [[ ! -f $out || $here/$name.c -nt $out || $here/plugin_abi.h -nt $out ]]; then
    ${CC:-gcc} -shared -fPIC -O2 -Wall -o "$out" "$here/$name.c" -lpthread
fi
echo "$out"
