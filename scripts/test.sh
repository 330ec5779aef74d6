#!/usr/bin/env bash
# Runs every check CI runs, on a fresh Debian 12 machine with Rust (root, or the tools already
# there): installs only what is missing, then fmt, clippy (native and wasm), the page build,
# Trunk's build of the same page, and every test with nextest -- the headless-browser test, the
# grpcio client test and the crash tests included.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TRUNK_VERSION=0.21.14
GRPCIO_VERSION=1.85.1
GOOGLEAPIS_PROTOS_VERSION=1.76.0
VENV=target/py-venv

log() { printf '==> %s\n' "$*" >&2; }
step() { log "$1"; local t0=$SECONDS; shift; "$@"; log "   done in $((SECONDS - t0)) s"; }

apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: missing Debian packages: $*; install them (apt-get install $*) or run as root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_missing() {
    local need=()
    command -v chromium >/dev/null || need+=(chromium)
    command -v chromedriver >/dev/null || need+=(chromium-driver)
    # Chinese titles and channel names in the browser test's screenshots.
    fc-list 2>/dev/null | grep -qi "wenquanyi\|zenhei" || need+=(fonts-wqy-zenhei)
    command -v npm >/dev/null || need+=(nodejs npm)
    python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
    command -v redis-server >/dev/null || need+=(redis-server)
    # Precompressed page files (build-web.sh).
    command -v brotli >/dev/null || need+=(brotli)
    if ((${#need[@]})); then apt_install "${need[@]}"; fi

    rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed | grep -q '^clippy' || rustup component add clippy
    rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
    command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
    if ! { command -v trunk >/dev/null && trunk --version | grep -q " $TRUNK_VERSION\$"; }; then
        # Plain --locked would pick 0.22, which needs a newer rustc.
        cargo install trunk --version "$TRUNK_VERSION" --locked
    fi

    # The seed's grpcio client and third-party clients (reflection v1alpha, rich error
    # details), for the compatibility tests.
    if ! "$VENV/bin/python" -c 'import grpc, grpc_tools, grpc_reflection, grpc_status' 2>/dev/null; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION" \
            "grpcio-reflection==$GRPCIO_VERSION" "grpcio-status==$GRPCIO_VERSION" "googleapis-common-protos==$GOOGLEAPIS_PROTOS_VERSION"
    fi
}

step "installing what is missing" install_missing
export RECO_TEST_PYTHON=$ROOT/$VENV/bin/python

step "cargo fmt --check" cargo fmt --all -- --check
step "clippy (native)" cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (wasm page)" cargo clippy -p reco-web --target wasm32-unknown-unknown --target-dir target/wasm --locked -- -D warnings
# Also installs wasm-bindgen-cli at the Cargo.lock version and wasm-opt (npm binaryen@132).
step "building the page into dist/" scripts/build-web.sh
export PATH=$ROOT/.tools/binaryen-132/node_modules/.bin:$PATH
step "trunk build --release (the dev loop's build, offline)" \
    env CARGO_TARGET_DIR=target/wasm trunk build --release --offline --dist target/trunk-dist
step "tests" cargo nextest run --workspace --locked --no-fail-fast
