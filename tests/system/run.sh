#!/usr/bin/env bash
# `just test-system`: boots a whole ARM machine under QEMU (qemu-system-aarch64, the
# `virt` board) with Debian's arm64 kernel and an initramfs made here from Debian's
# packages (busybox, the vivid camera driver's modules), the static aarch64 clip-edge
# and the int8 shapes bundle; its /init (tests/system/init) checks the camera through
# the real V4L2 driver, an unplug and replug while `run` goes on, a GPIO line driven
# through the kernel's PL061 driver, and the labels of the sample images, which must
# be the host's. Fails on any failed or missing check, a kernel oops or a time-out.
#
#   tests/system/run.sh [CPU...]     default: cortex-a72 cortex-a76
#
# Downloads (about 61 MB, once, into target/system/debs): linux-image-<abi>-arm64 (the
# version Debian's linux-image-arm64 points at today) and busybox-static, with apt's own
# signature checks through a private apt state: the host's apt set-up is not touched.
# Needs qemu-system-arm, debian-archive-keyring, cpio (tests/setup.sh installs them) and
# `just cross aarch64-unknown-linux-musl` (the recipe's dependency) and `just build`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=$ROOT/target/system
CLIP_EDGE=$ROOT/target/aarch64-unknown-linux-musl/release/clip-edge
BUNDLE=$ROOT/models/shapes/bundle-int8
SAMPLES=$ROOT/models/shapes/samples
TIMEOUT=${TIMEOUT:-600}
cpus=("$@")
[[ ${#cpus[@]} == 0 ]] && cpus=(cortex-a72 cortex-a76)
say() { echo "test-system: $*" >&2; }

apt_opts=(
    -o Dir::State="$W/apt/state" -o Dir::State::status="$W/apt/state/status"
    -o Dir::Cache="$W/apt/cache" -o Dir::Etc::SourceList="$W/apt/sources.list"
    -o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null
    -o Dir::Etc::PreferencesParts=/dev/null
    -o APT::Architecture=arm64 -o APT::Architectures=arm64 -o Acquire::Languages=none
    -o APT::Sandbox::User=root
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
)

fetch() {
    [[ -f $W/x/bin/busybox ]] && ls "$W"/x/boot/vmlinuz-* >/dev/null 2>&1 && return 0
    rm -rf "$W/apt" "$W/debs" "$W/x"
    mkdir -p "$W"/apt/state/lists/partial "$W"/apt/cache/archives/partial "$W/debs" "$W/x"
    touch "$W/apt/state/status"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    cat >"$W/apt/sources.list" <<EOF
deb [arch=arm64 signed-by=$keyring] http://deb.debian.org/debian bookworm main
deb [arch=arm64 signed-by=$keyring] http://deb.debian.org/debian-security bookworm-security main
EOF
    apt-get "${apt_opts[@]}" -qq update
    local abi
    abi=$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 |
        sed -n 's/.*Depends: linux-image-\(6\.[0-9.]*-[0-9]*-arm64\)$/\1/p' | head -n 1)
    [[ -n $abi ]] || { say "cannot find Debian's arm64 kernel package"; exit 1; }
    (cd "$W/debs" && apt-get "${apt_opts[@]}" -qq download "linux-image-$abi" busybox-static)
    for d in "$W"/debs/*.deb; do
        say "$(dpkg-deb -f "$d" Package Version | paste -sd' ') ($(du -h "$d" | cut -f1))"
        dpkg-deb -x "$d" "$W/x"
    done
}

# The modules `modprobe NAME` needs, dependencies first, from each .ko's modinfo
# (the package has no modules.dep; busybox's depmod makes one in the guest).
declare -A module_path=() visited=()
modules=()
add_module() {
    local name=${1//-/_} dir=$2 dep
    [[ -n ${visited[$name]:-} ]] && return 0
    visited[$name]=1
    local path=${module_path[$name]:-}
    [[ -n $path ]] || return 0 # built into the kernel
    for dep in $(strings -a "$dir/$path" | sed -n 's/^depends=//p' | head -n 1 | tr , ' '); do
        add_module "$dep" "$dir"
    done
    modules+=("$path")
}

initramfs() {
    local kver dir root m
    kver=$(ls "$W/x/lib/modules" | head -n 1)
    dir=$W/x/lib/modules/$kver
    root=$W/root
    rm -rf "$root"
    mkdir -p "$root"/{bin,proc,sys,dev,tmp,bundle,samples}
    cp "$W/x/bin/busybox" "$root/bin/busybox"
    cp "$CLIP_EDGE" "$root/clip-edge"
    cp "$BUNDLE"/* "$root/bundle/"
    cp "$SAMPLES"/*.png "$root/samples/"
    cp tests/system/init "$root/init"
    chmod +x "$root/init"
    while IFS= read -r m; do
        local name=${m##*/}
        name=${name%.ko}
        module_path[${name//-/_}]=$m
    done < <(cd "$dir" && find kernel -name '*.ko')
    add_module vivid "$dir"
    for m in "${modules[@]}"; do
        mkdir -p "$root/lib/modules/$kver/$(dirname "$m")"
        cp "$dir/$m" "$root/lib/modules/$kver/$m"
    done
    cp "$dir/modules.builtin" "$dir/modules.order" "$root/lib/modules/$kver/"
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 >"$W/initrd.gz"
    # Debian's arm64 vmlinuz is an uncompressed Image with an EFI stub: -kernel takes it.
    cp "$W/x/boot/vmlinuz-$kver" "$W/Image"
    say "kernel $kver; initramfs $(du -h "$W/initrd.gz" | cut -f1) with modules: ${modules[*]##*/}"
}

# The host's top label per sample, from the same bundle, as `file top-label` lines.
top_labels() {
    sed -n 's/.*"source":"\([^"]*\)","top":\[{"label":"\([^"]*\)".*/\1 \2/p' |
        sed 's|^.*/||' | sort
}

boot() {
    local cpu=$1 log=$W/boot-$1.log start
    say "booting $cpu"
    start=$SECONDS
    timeout "$TIMEOUT" qemu-system-aarch64 -M virt -cpu "$cpu" -smp 1 -m 512 -nographic \
        -kernel "$W/Image" -initrd "$W/initrd.gz" -no-reboot -nic none \
        -append "console=ttyAMA0 panic=-1 rdinit=/init quiet" </dev/null >"$log" 2>&1 ||
        say "qemu exited with $? (timeout: $TIMEOUT s)"
    tr -d '\r' <"$log" >"$log.txt" && mv "$log.txt" "$log"
    grep -E '^@@' "$log" | grep -v '^@@LABELS' >&2 || true
    say "$cpu: booted, checked and powered off in $((SECONDS - start)) s"
    local failed=0 c
    for c in vivid camera-640x480 camera-320x240 reconnect gpio; do
        grep -q "^@@CHECK $c PASS" "$log" || { say "$cpu: check $c failed or missing"; failed=1; }
    done
    if grep -qE 'Kernel panic|Oops|BUG:|Call trace' "$log"; then
        say "$cpu: the kernel oopsed (see $log)"
        failed=1
    fi
    local guest host
    guest=$(sed -n 's/^@@LABELS //p' "$log" | top_labels)
    host=$("$ROOT/target/release/clip-edge" run --bundle "$BUNDLE" --source "dir:$SAMPLES" --json 2>/dev/null | top_labels)
    if [[ -z $guest || $guest != "$host" ]]; then
        say "$cpu: labels differ from the host's"
        diff <(echo "$host") <(echo "$guest") >&2 || true
        failed=1
    else
        say "$cpu: the $(echo "$guest" | wc -l) sample labels are the host's"
    fi
    return $failed
}

mkdir -p "$W"
fetch
initramfs
status=0
for cpu in "${cpus[@]}"; do
    boot "$cpu" || status=1
done
[[ $status == 0 ]] && say "passed (${cpus[*]})" || say "FAILED (logs: $W/boot-*.log)"
exit $status
