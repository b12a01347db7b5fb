#!/usr/bin/env python3
"""What each crate costs in a binary's code, like `cargo bloat --crates`.

usage: boards/crate_sizes.py BINARY [--nm NM] [--top N]

Sums the sizes of the binary's function symbols (`nm -S -C`, text symbols only) by the
crate their demangled path starts with. A generic function is filed under the crate
that defines it, not the one that instantiates it: `rayon_core::join_context` closures
instantiated by tract-linalg's matmul dispatch count as rayon_core. Symbols without a
Rust path (assembly kernels, C, libc) are `[non-rust]`. Needs an unstripped binary
(`just cross` keeps the symbols; `just board` strips them).
"""
import argparse
import collections
import re
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--nm", default="nm", help="nm for the binary's target (aarch64-linux-gnu-nm)")
    ap.add_argument("--top", type=int, default=25, help="crates to print")
    a = ap.parse_args()
    out = subprocess.run([a.nm, "-S", "--size-sort", "-C", a.binary],
                         check=True, capture_output=True, text=True).stdout
    by_crate = collections.Counter()
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4 or parts[2] not in "tTwW":
            continue
        name = parts[3].lstrip("<&")
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
        by_crate[m.group(1) if m else "[non-rust]"] += int(parts[1], 16)
    if not by_crate:
        print(f"{a.binary}: no symbols (stripped?)", file=sys.stderr)
        return 1
    total = sum(by_crate.values())
    print(f"{'MB':>6}  {'share':>5}  crate")
    for crate, size in by_crate.most_common(a.top):
        print(f"{size / 1e6:6.2f}  {100 * size / total:4.1f}%  {crate}")
    print(f"{total / 1e6:6.2f}  100.0%  all function symbols")
    return 0


if __name__ == "__main__":
    sys.exit(main())
