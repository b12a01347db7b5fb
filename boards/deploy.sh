#!/usr/bin/env bash
# Installs clip-edge on a board as a systemd service, over ssh (see boards/README.md,
# "Deploy"). Usually run as `just deploy HOST BOARD`, which cross-builds first.
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: boards/deploy.sh HOST [BOARD] [BUNDLE]
       STAGE_ONLY=DIR boards/deploy.sh - [BOARD] [BUNDLE]
       boards/deploy.sh --target BOARD

Installs clip-edge as the systemd service clip-edge on HOST (ssh destination, e.g.
pi@raspberrypi.local; needs sudo there):
  /opt/clip-edge/bin/clip-edge       the binary for BOARD's target (build: just cross TARGET)
  /opt/clip-edge/bundle/             BUNDLE (default models/shapes/bundle-int8)
  /opt/clip-edge/boards/*.toml       the board profiles
  /etc/clip-edge/clip-edge.env       settings (kept if it exists; CLIP_EDGE_BOARD updated)
  /etc/systemd/system/clip-edge.service
  /etc/udev/rules.d/60-clip-edge-gpio.rules
then enables and (re)starts the service. BOARD defaults to pi4.

  --target BOARD   print BOARD's Rust target (its profile's `target = "..."`) and exit

Environment:
  STAGE_ONLY=DIR      only stage the files under DIR (no ssh); DIR/install.sh installs
                      them on the board: `sudo sh install.sh`
  CLIP_EDGE_BIN=FILE  the binary to install (default: $CARGO_TARGET_DIR or target/,
                      then TARGET/release/clip-edge)
  BOARDS_DIR=DIR      where the board profiles are (default: boards/ of this repository)
  SSH=CMD             ssh command (default: ssh)
EOF
}

die() {
    echo "deploy: error: $*" >&2
    exit 2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
boards_dir=${BOARDS_DIR:-$repo/boards}

# The board names (profiles boards/NAME.toml), space-separated.
board_names() {
    local f names=()
    for f in "$boards_dir"/*.toml; do
        [[ -e $f ]] && names+=("$(basename "$f" .toml)")
    done
    echo "${names[*]:-}"
}

# Checks BOARD has a profile; prints its Rust target.
board_target() {
    local board=$1 profile=$boards_dir/$1.toml names target
    if [[ ! $board =~ ^[A-Za-z0-9._-]+$ || ! -f $profile ]]; then
        names=$(board_names)
        die "unknown board '$board' (no $profile); boards: ${names:-none found in $boards_dir}"
    fi
    # `target = "..."` at the start of a line (the profile's top-level table).
    target=$(sed -n 's/^[[:space:]]*target[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$profile" | head -n 1)
    if [[ -z $target ]]; then
        target=aarch64-unknown-linux-musl
        echo "deploy: $profile has no target = \"...\"; using $target" >&2
    fi
    echo "$target"
}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    usage
    exit 0
fi
if [[ ${1:-} == --target ]]; then
    [[ $# == 2 ]] || { usage; exit 2; }
    board_target "$2"
    exit 0
fi
if [[ $# -lt 1 || $# -gt 3 || -z $1 ]]; then
    usage
    exit 2
fi

host=$1
board=${2:-pi4}
bundle=${3:-$repo/models/shapes/bundle-int8}
stage_only=${STAGE_ONLY:-}
[[ -n $stage_only || $host != - ]] || die "HOST '-' is only for STAGE_ONLY=DIR"

target=$(board_target "$board")
bin=${CLIP_EDGE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/$target/release/clip-edge}
[[ -f $bin ]] || die "no binary $bin for $board ($target): build it with \`just cross $target\`"
[[ -f $bundle/bundle.toml ]] || die "$bundle is not a bundle (no bundle.toml)"

# A binary for another architecture would only fail on the board: check ELF binaries.
if command -v file >/dev/null 2>&1; then
    kind=$(file -b "$bin")
    case $target in
        aarch64-*) arch="ARM aarch64" ;;
        armv7-* | arm-*) arch="ARM," ;;
        *) arch="" ;;
    esac
    if [[ $kind == ELF* && -n $arch && $kind != *"$arch"* ]]; then
        die "$bin is not a $target binary: $kind"
    fi
fi

if [[ -n $stage_only ]]; then
    stage=$stage_only
    mkdir -p "$stage"
    [[ -z $(ls -A "$stage") ]] || die "STAGE_ONLY=$stage is not empty"
else
    stage=$(mktemp -d "${TMPDIR:-/tmp}/clip-edge-stage.XXXXXX")
    trap 'rm -rf "$stage"' EXIT
fi

# --- stage: the files as they will lie on the board, plus install.sh ---
opt=$stage/opt/clip-edge
mkdir -p "$opt/bin" "$opt/bundle" "$opt/boards" "$stage/etc/clip-edge" \
    "$stage/etc/systemd/system" "$stage/etc/udev/rules.d"

case $target in armv7-* | arm-*) strip=arm-linux-gnueabihf-strip ;; *) strip=aarch64-linux-gnu-strip ;; esac
if command -v "$strip" >/dev/null 2>&1 && "$strip" -o "$opt/bin/clip-edge" "$bin" 2>/dev/null; then
    :
else
    cp "$bin" "$opt/bin/clip-edge" # not an ELF for $strip (or no strip): as is
fi
chmod 0755 "$opt/bin/clip-edge"
cp -R "$bundle"/. "$opt/bundle/"
cp "$boards_dir"/*.toml "$opt/boards/"
cp "$repo/boards/README.md" "$opt/README.md"
cp "$repo/boards/systemd/clip-edge.service" "$stage/etc/systemd/system/clip-edge.service"
sed "s/^CLIP_EDGE_BOARD=.*/CLIP_EDGE_BOARD=$board/" "$repo/boards/systemd/clip-edge.env" \
    >"$stage/etc/clip-edge/clip-edge.env"
cat >"$stage/etc/udev/rules.d/60-clip-edge-gpio.rules" <<'EOF'
# GPIO character devices to the gpio group, for the clip-edge service (installed by
# clip-edge's boards/deploy.sh; Raspberry Pi OS has an equivalent rule already).
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
EOF

cat >"$stage/install.sh" <<'EOF'
#!/bin/sh
# Installs the staged clip-edge files (this directory) and starts the service. Run on
# the board as root: `sudo sh install.sh`. `sh install.sh ROOT` only copies the files
# under ROOT (for checking: no systemctl, groups or udev, and the bundle is copied,
# not verified, as the binary may be for another CPU).
#
# On the board nothing is left half-done (boards/README.md, "Safe updates"): the new
# bundle goes beside the current one and is verified by the new binary (the board
# profile's trusted_keys, hashes, one frame) before /opt/clip-edge/bundle is switched
# to it in one rename; every other file is replaced by a rename; if the service then
# does not start (READY=1 comes after the first frame), the previous bundle and
# binary are put back.
set -eu
src=$(cd "$(dirname "$0")" && pwd)
root=${1:-}
board=$(sed -n 's/^CLIP_EDGE_BOARD=//p' "$src/etc/clip-edge/clip-edge.env")
opt=$root/opt/clip-edge
new_bin=$src/opt/clip-edge/bin/clip-edge

# A file replaced by a rename: a power loss leaves the old file or the new one.
replace() { # SRC DST MODE
    cp "$1" "$2.new" && chmod "$3" "$2.new" && mv -f "$2.new" "$2"
}

mkdir -p "$opt/bin" "$opt/boards"
if [ -z "$root" ]; then
    "$new_bin" --board "$board" bundle install "$src/opt/clip-edge/bundle" --root "$opt"
else
    rm -rf "$opt/.bundle.new"
    cp -R "$src/opt/clip-edge/bundle" "$opt/.bundle.new"
    rm -rf "$opt/bundle"
    mv "$opt/.bundle.new" "$opt/bundle"
fi
# The binary now running stays, for a rollback.
if [ -e "$opt/bin/clip-edge" ]; then
    replace "$opt/bin/clip-edge" "$opt/bin/clip-edge.previous" 0755
fi
replace "$new_bin" "$opt/bin/clip-edge" 0755
for f in "$src/opt/clip-edge/boards/"*.toml; do
    replace "$f" "$opt/boards/$(basename "$f")" 0644
done
replace "$src/opt/clip-edge/README.md" "$opt/README.md" 0644

mkdir -p "$root/etc/systemd/system" "$root/etc/udev/rules.d" "$root/etc/clip-edge"
cp "$src/etc/systemd/system/clip-edge.service" "$root/etc/systemd/system/"
cp "$src/etc/udev/rules.d/60-clip-edge-gpio.rules" "$root/etc/udev/rules.d/"
env=$root/etc/clip-edge/clip-edge.env
if [ -e "$env" ]; then
    # Keep the user's settings; only the board follows the deploy.
    cp "$src/etc/clip-edge/clip-edge.env" "$env.new"
    sed "s/^CLIP_EDGE_BOARD=.*/CLIP_EDGE_BOARD=$board/" "$env" >"$env.tmp"
    cat "$env.tmp" >"$env" && rm -f "$env.tmp"
    echo "install: kept $env (CLIP_EDGE_BOARD=$board); the new template is $env.new"
else
    cp "$src/etc/clip-edge/clip-edge.env" "$env"
    echo "install: wrote $env"
fi

if [ -n "$root" ]; then
    echo "install: files under $root; not starting anything"
    exit 0
fi
getent group video >/dev/null || groupadd --system video
getent group gpio >/dev/null || groupadd --system gpio
udevadm control --reload-rules && udevadm trigger --subsystem-match=gpio || true
systemctl daemon-reload
systemctl enable clip-edge
# restart, not `enable --now`: a running service must pick up the new binary.
if ! systemctl restart clip-edge; then
    echo "install: clip-edge did not start with the new bundle; rolling back (journalctl -u clip-edge says why)" >&2
    if [ -e "$opt/bin/clip-edge.previous" ]; then
        replace "$opt/bin/clip-edge.previous" "$opt/bin/clip-edge" 0755
    fi
    "$opt/bin/clip-edge" bundle rollback --root "$opt" || true
    systemctl restart clip-edge || true
    exit 1
fi
echo "install: clip-edge.service enabled and started"
EOF
chmod 0755 "$stage/install.sh"

if [[ -n $stage_only ]]; then
    echo "deploy: staged clip-edge for $board ($target) in $stage"
    echo "deploy: copy it to the board, then there: sudo sh install.sh"
    exit 0
fi

# --- copy to HOST and install there ---
ssh_cmd=${SSH:-ssh}
echo "deploy: copying to $host"
remote=$($ssh_cmd "$host" 'mktemp -d /tmp/clip-edge-deploy.XXXXXX')
tar -C "$stage" -czf - . | $ssh_cmd "$host" "tar -C '$remote' -xzf -"
echo "deploy: installing on $host (sudo)"
$ssh_cmd -t "$host" "sudo sh '$remote/install.sh'; rc=\$?; rm -rf '$remote'; exit \$rc"
echo "deploy: done. Next: ssh $host journalctl -u clip-edge -f"
