# clip-edge: every recipe a person runs. `just --list` shows them.
# Everything builds in release (tract is too slow in debug) into one target dir.

# Show the recipes.
default:
    @just --list

# Install what the tests need (Debian/Ubuntu, run as root or with sudo).
setup:
    bash tests/setup.sh

# Classify the bundled sample images with the bundled shapes model.
demo:
    cargo run --release -p clip-edge -- demo

# Build both binaries (host).
build:
    cargo build --release --workspace

# Every test on the host: unit, integration and end-to-end.
test: build
    cargo test --release --workspace

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings

# Rebuild the shapes bundle from the committed exports (after retraining).
shapes-bundle: build
    ./target/release/clip-quantize labels --text-model models/shapes/text_encoder.onnx --labels models/shapes/labels.txt --templates photo --out models/shapes/bundle/labels.safetensors
    ./target/release/clip-quantize bundle --image-model models/shapes/image_encoder.onnx --labels models/shapes/bundle/labels.safetensors --out models/shapes/bundle
