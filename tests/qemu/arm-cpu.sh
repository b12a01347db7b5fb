# Sourced by insn.sh and insn-profile.sh: the ARM build of clip-edge and the QEMU user
# command that run it as CPU. Sets `bin` and `qemu` (an array), or exits when the build is
# missing.
#
# CPU: an aarch64 QEMU CPU (cortex-a72 = SMLAL path, cortex-a76 = SDOT path; runs the
# static musl build, or CLIP_EDGE_BIN) or an armv7 one (cortex-a15, cortex-a7...; runs the
# armv7 build with TRACT_CPU_ARM32_NEON=true).
arm_cpu() { # cpu caller
    case $1 in
        cortex-a5|cortex-a7|cortex-a8|cortex-a9|cortex-a15)
            bin=target/armv7-unknown-linux-gnueabihf/release/clip-edge
            qemu=(env TRACT_CPU_ARM32_NEON=true qemu-arm -cpu "$1" -L /usr/arm-linux-gnueabihf) ;;
        *)
            bin=${CLIP_EDGE_BIN:-target/aarch64-unknown-linux-musl/release/clip-edge}
            qemu=(qemu-aarch64 -cpu "$1") ;;
    esac
    [[ -x $bin ]] || { echo "$2: missing $bin (run \`just cross\`)" >&2; exit 1; }
}
