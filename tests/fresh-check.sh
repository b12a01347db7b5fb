#!/usr/bin/env bash
# The README's two commands on a fresh machine: a minimal Debian 12 (bookworm) chroot
# made by debootstrap, holding only what a machine with Rust has (gcc and libc6-dev
# for the linker, curl and ca-certificates that rustup's installer needs), the
# host's rustup toolchains bind-mounted, an empty CARGO_HOME, and a clean clone of
# this repository's HEAD. What the host happens to have installed cannot hide a
# missing step of tests/setup.sh there.
#
#   tests/fresh-check.sh [STAGE]     (root; `just fresh-check`)
#
# STAGE: setup (tests/setup.sh only, a few minutes), demo (then the README's first
# command), all (default: then the test command, `just lint test test-qemu`, about as
# long as CI). The chroot is kept in target/fresh-root between runs (delete it to
# start over); every run starts from a fresh clone and an empty CARGO_HOME.
set -euo pipefail
stage=${1:-all}
case $stage in setup | demo | all) ;; *) sed -n '2,15p' "$0" >&2; exit 2 ;; esac
[[ $(id -u) == 0 ]] || { echo "fresh-check: run as root (debootstrap, chroot, mounts)" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/.." && pwd)
root=$(realpath -m "${FRESH_ROOT:-$repo/target/fresh-root}")
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
rustup_bin=$(command -v rustup)

if [[ ! -x $root/usr/bin/apt-get ]]; then
    command -v debootstrap >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
    echo "fresh-check: debootstrap bookworm into $root"
    debootstrap --variant=minbase --include=ca-certificates,curl,gcc,libc6-dev,git \
        bookworm "$root" http://deb.debian.org/debian >/dev/null
fi

mounts=()
cleanup() {
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { mkdir -p "$2" && mount --bind "$1" "$2" && mounts+=("$2"); }
bind /proc "$root/proc"
bind /dev "$root/dev"
bind /sys "$root/sys"
bind "$rustup_home" "$root/opt/rustup"
# The host's network as it is: its resolver and its trust store (a machine behind a
# TLS-intercepting proxy trusts the proxy's CA, which Debian's package does not carry).
cp /etc/resolv.conf "$root/etc/resolv.conf"
bind /etc/ssl/certs "$root/etc/ssl/certs"

# The rustup proxies only (cargo, rustc, ...), not the tools installed beside them
# (just, cargo-nextest): a fresh machine has none of those.
rm -rf "$root/opt/cargo" "$root/src/clip-edge"
mkdir -p "$root/opt/cargo/bin"
cp "$rustup_bin" "$root/opt/cargo/bin/rustup"
for tool in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
    ln -s rustup "$root/opt/cargo/bin/$tool"
done
git clone -q "$repo" "$root/src/clip-edge"

commands='bash tests/setup.sh'
[[ $stage != setup ]] && commands+=' && cargo run --release -p clip-edge -- demo'
[[ $stage == all ]] && commands+=' && just lint test test-qemu'
echo "fresh-check: in the chroot: $commands"
start=$SECONDS
chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/opt/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/opt/cargo RUSTUP_HOME=/opt/rustup \
    /bin/bash -c "cd /src/clip-edge && $commands"
echo "fresh-check: $stage passed in $((SECONDS - start)) s"
