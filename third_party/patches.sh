#!/usr/bin/env bash
# The vendored crates as a patch series: third_party/<crate>/ is the crates.io release
# plus the patches in third_party/patches/<crate>/*.patch, applied in name order. Each
# patch starts with its reason, its measured effect and whether to offer it upstream.
#
#   third_party/patches.sh check            every vendored crate is exactly its pristine
#                                           release plus its patches, and Cargo.lock
#                                           resolves each of them to the vendored copy
#                                           (a release that no longer matches a [patch]
#                                           fails here; cargo would only warn)
#   third_party/patches.sh apply CRATE VER  rebuild third_party/CRATE from release VER
#                                           plus the patches (rebasing onto a new
#                                           release; a hunk that no longer applies is
#                                           named and left as a .rej file)
#   third_party/patches.sh diff CRATE       what third_party/CRATE changes that the
#                                           patches do not (to write a new patch)
#
# Pristine releases come from static.crates.io, checked against the crates.io index's
# sha256, and are cached in target/third_party/pristine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${CARGO_TARGET_DIR:-target}/third_party/pristine
# Files a crates.io release or cargo's unpacking carries that vendoring drops or that
# do not change the build (a release's own Cargo.lock: the vendored tests use
# third_party/Cargo.lock; tract-linalg's release shipped two stray core dumps).
ignore=(-x .cargo-ok -x .cargo_vcs_info.json -x Cargo.lock -x 'core.[0-9]*' -x '*.orig' -x '*.rej')

usage() { sed -n '2,19p' "$0" >&2; exit 2; }

# pristine CRATE VERSION -> prints the directory of the unpacked release
pristine() {
    local crate=$1 version=$2 dir="$cache/$1-$2"
    if [[ ! -d $dir ]]; then
        mkdir -p "$cache"
        local file="$cache/$crate-$version.crate" index
        case ${#crate} in
            1) index=1/$crate ;; 2) index=2/$crate ;; 3) index=3/${crate:0:1}/$crate ;;
            *) index=${crate:0:2}/${crate:2:2}/$crate ;;
        esac
        local want
        want=$(curl -sSfL "https://index.crates.io/$index" |
            python3 -c 'import json,sys; v=sys.argv[1]
print(next(e["cksum"] for e in map(json.loads, sys.stdin) if e["vers"] == v))' "$version") || {
            echo "patches: $crate $version is not in the crates.io index" >&2; exit 1; }
        curl -sSfL -o "$file" "https://static.crates.io/crates/$crate/$crate-$version.crate"
        local got
        got=$(sha256sum "$file" | cut -d' ' -f1)
        [[ $got == "$want" ]] || { echo "patches: $file: sha256 $got, the index says $want" >&2; exit 1; }
        tar -xzf "$file" -C "$cache"
    fi
    echo "$dir"
}

# apply_series CRATE SRC DST: copy SRC to DST and apply CRATE's patches there.
apply_series() {
    local crate=$1 src=$2 dst=$3 failed=0
    rm -rf "$dst"
    cp -r "$src" "$dst"
    rm -f "$dst"/core.[0-9]*
    for p in third_party/patches/"$crate"/*.patch; do
        if ! patch -d "$dst" -p1 -s --no-backup-if-mismatch -r - -f <"$p" >/dev/null; then
            echo "patches: $p does not apply to $crate $(basename "$src" | sed "s/^$crate-//")" >&2
            failed=1
        fi
    done
    return $failed
}

version_of() { sed -n 's/^version = "\(.*\)"/\1/p' "third_party/$1/Cargo.toml" | head -1; }

crates() { for d in third_party/patches/*/; do basename "$d"; done; }

check() {
    local failed=0 tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    for crate in $(crates); do
        local version src
        version=$(version_of "$crate")
        src=$(pristine "$crate" "$version")
        if ! apply_series "$crate" "$src" "$tmp/$crate"; then
            failed=1
        elif ! diff -rq "${ignore[@]}" "$tmp/$crate" "third_party/$crate" >"$tmp/diff"; then
            echo "patches: third_party/$crate is not $crate $version plus its patches:" >&2
            sed 's/^/    /' "$tmp/diff" >&2
            echo "    (third_party/patches.sh diff $crate shows the difference)" >&2
            failed=1
        else
            echo "patches: $crate $version + $(ls third_party/patches/"$crate" | wc -l) patches == third_party/$crate"
        fi
    done
    # Cargo.lock: each vendored crate resolved to its path copy, nothing from crates.io.
    python3 - "$(crates)" <<'EOF' || failed=1
import sys
# Cargo.lock's blocks, read without tomllib (Python 3.11+; Ubuntu 22.04 has 3.10).
vendored = set(sys.argv[1].split())
blocks = [b for b in open("Cargo.lock").read().split("\n\n") if b.startswith("[[")]
def fields(block):
    return dict(l.split(" = ", 1) for l in block.splitlines()[1:] if " = " in l)
packages = [fields(b) for b in blocks if b.startswith("[[package]]")]
packages = [{k: v.strip('"') for k, v in p.items()} for p in packages]
bad = [f'{p["name"]} {p["version"]} from {p["source"]}' for p in packages
       if p["name"] in vendored and "source" in p]
unused = [f'{fields(b)["name"]} {fields(b)["version"]}'.replace('"', "")
          for b in blocks if b.startswith("[[patch.unused]]")]
seen = {p["name"] for p in packages if p["name"] in vendored and "source" not in p}
for line in bad:
    print(f"patches: Cargo.lock takes {line}, not the vendored copy", file=sys.stderr)
for line in unused:
    print(f"patches: Cargo.lock: [patch] of {line} is unused (the release moved on?)", file=sys.stderr)
for name in sorted(vendored - seen):
    print(f"patches: Cargo.lock has no vendored {name}", file=sys.stderr)
if bad or unused or vendored - seen:
    sys.exit(1)
print(f"patches: Cargo.lock resolves {', '.join(sorted(vendored))} to third_party/")
EOF
    return $failed
}

case ${1:-} in
    check) check ;;
    apply)
        [[ $# == 3 ]] || usage
        crate=$2 version=$3
        [[ -d third_party/patches/$crate ]] || { echo "patches: no series for $crate" >&2; exit 1; }
        src=$(pristine "$crate" "$version")
        status=0
        apply_series "$crate" "$src" "third_party/$crate" || status=$?
        # The release's own lock file: the vendored tests' workspace has third_party/Cargo.lock.
        rm -f "third_party/$crate/Cargo.lock"
        if [[ $status != 0 ]]; then
            echo "patches: fix the hunks in the .rej files under third_party/$crate, then regenerate the patch (diff)" >&2
            exit 1
        fi
        echo "patches: third_party/$crate is now $crate $version + patches; update its version in Cargo.toml's workspace dependencies"
        ;;
    diff)
        [[ $# == 2 ]] || usage
        crate=$2
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        apply_series "$crate" "$(pristine "$crate" "$(version_of "$crate")")" "$tmp/a"
        (cd "$tmp" && cp -r "$root/third_party/$crate" b && diff -ruN "${ignore[@]}" a b) || true
        ;;
    *) usage ;;
esac
