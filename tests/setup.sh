#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian/Ubuntu machine with Rust:
# `just`, and the rustfmt/clippy components. Safe to run again.
set -euo pipefail

if ! command -v just >/dev/null 2>&1; then
    echo "setup: installing just (cargo install)"
    cargo install just --locked --quiet
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "setup: done"
