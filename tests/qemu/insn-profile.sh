#!/usr/bin/env bash
# Guest instructions per frame, by function: where a frame's instructions go on an ARM
# CPU, counted (not timed) under qemu-user by the TCG plugin tests/qemu-insn/prof.c.
#
#   tests/qemu/insn-profile.sh CPU BUNDLE IMAGE [K [TOP]]
#
# Profiles `clip-edge classify` of IMAGE once and K+1 times (default K=2) and prints, per
# function of the binary, (count(K+1 frames) - count(1 frame)) / K: the per-frame
# instructions with loading cancelled, as tests/qemu/insn.sh counts them, largest TOP
# (default 40) first. CPU: an aarch64 one, as in insn.sh (the static musl build). Needs
# python3 and binutils' nm.
set -euo pipefail
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[[ $# -ge 3 ]] || { sed -n '2,11p' "$0" >&2; exit 2; }
cpu=$1 bundle=$2 image=$3 k=${4:-2} top=${5:-40}
plugin=$(tests/qemu-insn/build.sh prof)
source tests/qemu/arm-cpu.sh
arm_cpu "$cpu" insn-profile
# Block addresses are mapped through nm, which only holds for a binary loaded where it was
# linked: the static, non-PIE musl build. The armv7 build is position-independent.
if [[ ${qemu[0]} != qemu-aarch64 ]]; then
    echo "insn-profile: aarch64 CPUs only ($bin is position-independent: its run-time addresses are not nm's)" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
profile() { # frames out
    local imgs=() i
    for ((i = 0; i < $1; i++)); do imgs+=("$image"); done
    "${qemu[@]}" -plugin "$plugin,out=$2" -d plugin "$bin" --threads "${THREADS:-1}" \
        classify --bundle "$bundle" --json "${imgs[@]}" >/dev/null
}
profile 1 "$work/one"
profile $((k + 1)) "$work/more"
nm -n --defined-only "$bin" | grep -i ' [tw] ' > "$work/syms"
python3 - "$work" "$k" "$top" "$cpu" <<'PY'
import bisect, collections, subprocess, sys
work, k, top, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
addrs, names = [], []
for line in open(f"{work}/syms"):
    a, _, name = line.rstrip("\n").split(" ", 2)
    addrs.append(int(a, 16)); names.append(name)
demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
def fold(path):
    per = collections.Counter()
    for line in open(path):
        v, n, runs = line.split()
        i = bisect.bisect_right(addrs, int(v, 16)) - 1
        per[i if i >= 0 else -1] += int(n) * int(runs)
    return per
one, more = fold(f"{work}/one"), fold(f"{work}/more")
frame = {i: (more[i] - one.get(i, 0)) / k for i in more}
total = sum(frame.values())
print(f"{cpu}: {total / 1e6:,.1f} M guest instructions per frame")
print(f"{'M/frame':>9} {'share':>6}  function")
for i, v in sorted(frame.items(), key=lambda kv: -kv[1])[:top]:
    name = demangled[i] if 0 <= i < len(demangled) and demangled[i] else (names[i] if i >= 0 else "?")
    name = name if len(name) < 150 else name[:147] + "..."
    print(f"{v / 1e6:9.2f} {100 * v / total:5.1f}%  {name}")
PY
