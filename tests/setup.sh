#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian/Ubuntu machine that has only
# Rust (rustup), then proves the cross toolchains work. What and why:
#
#   just, rustfmt, clippy          the recipes and `just lint`
#   rustup targets                 aarch64-unknown-linux-{musl,gnu}, armv7-unknown-linux-gnueabihf
#   gcc-aarch64-linux-gnu,         the linkers of the ARM builds, and the C compilers of the
#   gcc-arm-linux-gnueabihf        build scripts that compile C or assembly for the target
#                                  (blake3's NEON code, sha2-asm, psm, tract-linalg's kernels)
#   libc6-dev-arm64-cross,         the target's C headers (<stdint.h>, ...) and crt objects.
#   libc6-dev-armhf-cross          Only *recommended* by the cross gcc packages, so an install
#                                  with --no-install-recommends leaves them out, and the cross
#                                  gcc then falls back to the host's x86 headers (issue 13).
#   qemu-user                      runs the ARM test binaries (`just test-qemu`, `qemu-insn`)
#   gcc, binutils (nm), file,      the QEMU instruction-count plugin, the kernel census of the
#   python3                        QEMU tests, the binary-kind check of `just cross`
#   systemd                        `systemd-analyze verify` of the service unit (tests/tests/deploy.rs)
#   curl, patch                    `just check-patches`: the vendored crates are their crates.io
#                                  release plus third_party/patches
#   qemu-system-arm, cpio,         `just test-system` (tests/system/run.sh): a whole ARM machine
#   debian-archive-keyring         under qemu-system-aarch64, its initramfs packed by cpio from
#                                  Debian's arm64 packages, which apt checks against the keyring
#
# After installing it compiles, links and runs (under QEMU) a C file including
# <stdint.h> and <arm_neon.h> with the flags each ARM target's build scripts use, and
# fails naming the package that is missing: what a machine happens to have cannot hide
# a missing step. Safe to run again: apt runs (after one `apt-get update`) only if
# something is missing. Run as root or with sudo available.
# SKIP_CROSS=1 installs only the host tools.
set -euo pipefail

if ! command -v just >/dev/null 2>&1; then
    echo "setup: installing just (cargo install)"
    cargo install just --locked --quiet
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

[[ ${SKIP_CROSS:-0} == 1 ]] && { echo "setup: done (host tools only)"; exit 0; }

rustup target add aarch64-unknown-linux-musl aarch64-unknown-linux-gnu \
    armv7-unknown-linux-gnueabihf >/dev/null 2>&1

# What must exist -> the Debian package that provides it. Files, not `dpkg -s`: the
# check is what the build reads, whatever installed it.
declare -A need=(
    [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
    [arm-linux-gnueabihf-gcc]=gcc-arm-linux-gnueabihf
    [aarch64-linux-gnu-strip]=binutils-aarch64-linux-gnu
    [arm-linux-gnueabihf-strip]=binutils-arm-linux-gnueabihf
    [/usr/aarch64-linux-gnu/include/stdint.h]=libc6-dev-arm64-cross
    [/usr/arm-linux-gnueabihf/include/stdint.h]=libc6-dev-armhf-cross
    # The gnu builds run under qemu-user -L against the cross glibc.
    [/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1]=libc6-arm64-cross
    [/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3]=libc6-armhf-cross
    [qemu-aarch64]=qemu-user
    [qemu-arm]=qemu-user
    [gcc]=gcc
    [python3]=python3
    [file]=file
    [nm]=binutils
    [systemd-analyze]=systemd
    # third_party/patches.sh check (`just lint`): pristine releases + the patch series
    [curl]=curl
    [patch]=patch
    # tests/system/run.sh (`just test-system`)
    [qemu-system-aarch64]=qemu-system-arm
    [cpio]=cpio
    [strings]=binutils
    [/usr/share/keyrings/debian-archive-keyring.gpg]=debian-archive-keyring
)
missing=()
for what in "${!need[@]}"; do
    if [[ $what == /* ]]; then
        [[ -e $what ]] || missing+=("${need[$what]}")
    else
        command -v "$what" >/dev/null 2>&1 || missing+=("${need[$what]}")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    sudo=""
    [[ $(id -u) == 0 ]] || sudo=sudo
    echo "setup: installing ${missing[*]} (apt)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Compile, link and run a NEON C program per ARM target, as its build scripts would.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/probe.c" <<'EOF'
#include <stdint.h>
#include <string.h>
#include <arm_neon.h>
int main(void) {
    uint8_t out[16];
    vst1q_u8(out, vaddq_u8(vdupq_n_u8(20), vdupq_n_u8(22)));
    return memcmp(out, "****************", 16) != 0; /* '*' == 42 */
}
EOF
# target | compiler | flags (those its build scripts pass) | how to run | dev package
probes=(
    "aarch64-unknown-linux-gnu|aarch64-linux-gnu-gcc||qemu-aarch64 -L /usr/aarch64-linux-gnu|libc6-dev-arm64-cross"
    "aarch64-unknown-linux-musl|aarch64-linux-gnu-gcc|-static|qemu-aarch64|libc6-dev-arm64-cross"
    "armv7-unknown-linux-gnueabihf|arm-linux-gnueabihf-gcc|-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard|qemu-arm -L /usr/arm-linux-gnueabihf|libc6-dev-armhf-cross"
)
failed=0
for probe in "${probes[@]}"; do
    IFS='|' read -r target cc flags run pkg <<<"$probe"
    # shellcheck disable=SC2086 # flags and run are word lists
    if ! $cc $flags -O2 -o "$tmp/probe-$target" "$tmp/probe.c" 2>"$tmp/err"; then
        echo "setup: $cc cannot compile and link C with <stdint.h> and <arm_neon.h> for $target:" >&2
        sed 's/^/    /' "$tmp/err" | head -5 >&2
        echo "setup: the target's C headers and crt objects come from $pkg: apt-get install $pkg" >&2
        failed=1
    elif ! $run "$tmp/probe-$target"; then
        echo "setup: the $target probe built but did not run under '$run' (qemu-user, and for gnu $pkg's runtime)" >&2
        failed=1
    fi
done
[[ $failed == 0 ]] || exit 1
echo "setup: done (cross C toolchains checked for ${#probes[@]} ARM targets)"
