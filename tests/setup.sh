#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian/Ubuntu machine with Rust:
# `just`, the rustfmt/clippy components, and for the ARM cross builds and QEMU tests
# (`just cross`, `just test-qemu`, `just qemu-insn`): the rustup targets, Debian's
# aarch64/armhf cross gcc (linkers, and the glibc the gnu builds run against under
# qemu-user -L), qemu-user, python3, file, a host gcc for the QEMU plugin, and systemd
# (for `systemd-analyze verify` of the service unit).
# Safe to run again: apt runs (after one `apt-get update`) only if something is missing.
# Run as root or with sudo available. SKIP_CROSS=1 installs only the host tools.
set -euo pipefail

if ! command -v just >/dev/null 2>&1; then
    echo "setup: installing just (cargo install)"
    cargo install just --locked --quiet
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

if [[ ${SKIP_CROSS:-0} != 1 ]]; then
    rustup target add aarch64-unknown-linux-musl aarch64-unknown-linux-gnu \
        armv7-unknown-linux-gnueabihf >/dev/null 2>&1

    # command -> Debian package providing it
    declare -A need=(
        [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
        [arm-linux-gnueabihf-gcc]=gcc-arm-linux-gnueabihf
        [qemu-aarch64]=qemu-user
        [qemu-arm]=qemu-user
        [gcc]=gcc
        [python3]=python3
        [file]=file
        [nm]=binutils
        [systemd-analyze]=systemd # `systemd-analyze verify` of the unit (tests/tests/deploy.rs)
    )
    missing=()
    for cmd in "${!need[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
    done
    # The gnu builds run under qemu-user -L against the cross glibc.
    [[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]] || missing+=(libc6-arm64-cross)
    [[ -e /usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 ]] || missing+=(libc6-armhf-cross)
    if [[ ${#missing[@]} -gt 0 ]]; then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        sudo=""
        [[ $(id -u) == 0 ]] || sudo=sudo
        echo "setup: installing ${missing[*]} (apt)"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi
echo "setup: done"
