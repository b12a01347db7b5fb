#!/usr/bin/env python3
"""Which tract-linalg matmul kernels a program ran under qemu-user.

usage: kernels.py BINARY QEMU_IN_ASM_LOG

The log comes from `qemu-<arch> -d in_asm -D LOG BINARY ...`: QEMU writes every guest
translation block once, when it first translates it, with its start address. The
hand-written kernels (arm64simd_mmm_*, armv7neon_mmm_*, arm64fp16_mmm_*) are assembler
labels QEMU does not name, so the addresses are mapped here with `nm` (the binary must
not be stripped; a kernel's internal `.labels` count as the kernel). Prints each kernel whose code was executed, with the number of
distinct blocks translated in it. Deterministic and independent of logging.
"""
import bisect
import re
import subprocess
import sys

KERNEL = re.compile(r"^(arm64simd|arm64fp16|armv7neon|armvfpv2|arm64sve|arm64sme)_\w+$")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, log = sys.argv[1], sys.argv[2]
    nm = subprocess.run(["nm", "-n", binary], capture_output=True, text=True, check=True)
    syms = []  # (address, name), every symbol, sorted, to bound each kernel
    for line in nm.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW" and not parts[2].startswith("."):
            syms.append((int(parts[0], 16), parts[2]))
    addrs = [a for a, _ in syms]
    by_name = {n: a for a, n in syms}
    blocks = []  # (start address, name QEMU gave it or "")
    pending = None
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("IN:"):
                pending = line[3:].strip()
                continue
            if pending is not None:
                m = re.match(r"^0x([0-9a-f]+):", line)
                if m:
                    blocks.append((int(m.group(1), 16), pending))
                    pending = None
    # A PIE binary (the gnu builds) is loaded at a base QEMU picks: find it from the
    # blocks QEMU could name (the function's first block: address - nm address).
    biases: dict[int, int] = {}
    for pc, name in blocks:
        if name in by_name:
            b = pc - by_name[name]
            biases[b] = biases.get(b, 0) + 1
    bias = max(biases, key=biases.get) if biases else 0
    hits: dict[str, int] = {}
    for pc, _ in blocks:
        i = bisect.bisect_right(addrs, pc - bias) - 1
        if i >= 0 and KERNEL.match(syms[i][1]):
            hits[syms[i][1]] = hits.get(syms[i][1], 0) + 1
    if not hits:
        print("no tract-linalg kernel found (stripped binary, or no matmul ran)")
        return 1
    for name in sorted(hits):
        print(f"{name}\t{hits[name]} blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
