#!/usr/bin/env bash
# Builds the feed page (web/) into dist/, ready for `reco serve --web-dir dist`.
#
# Plain cargo + wasm-bindgen + wasm-opt, no Trunk: Trunk is for the `trunk serve` dev loop
# and takes ~8 minutes to install from source, which a first demo run should not wait for.
# Installs only what is missing, each at the version this tree needs:
#   - the wasm32-unknown-unknown rustup target,
#   - wasm-bindgen-cli at the wasm-bindgen version in Cargo.lock (cargo install, ~4 min once),
#   - wasm-opt from npm `binaryen@132` under .tools/ (Debian's binaryen 108 breaks the page).
#   - brotli (Debian), for the precompressed copies (.br, .gz) `reco serve` sends; gzip only without it.
# Without node/npm (and not root to apt-get them), the page is built without wasm-opt.
#
# Environment: RECO_WEB_DIST (output dir, default dist), CARGO_TARGET_DIR_WASM (default
# target/wasm, kept apart from native builds so the two never wait on each other's lock).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DIST=${RECO_WEB_DIST:-dist}
TARGET_DIR=${CARGO_TARGET_DIR_WASM:-target/wasm}
TARGET=wasm32-unknown-unknown
PROFILE=wasm-release
BINARYEN_VERSION=132
TOOLS="$ROOT/.tools"

log() { printf '==> %s\n' "$*" >&2; }

# The wasm-bindgen version locked for the page; the CLI must be exactly this version.
bindgen_version() {
    awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_target() {
    if rustup target list --installed | grep -qx "$TARGET"; then
        return
    fi
    log "adding the rustup target $TARGET"
    rustup target add "$TARGET"
}

ensure_wasm_bindgen() {
    local want=$1 have=""
    if command -v wasm-bindgen >/dev/null; then
        have=$(wasm-bindgen --version | awk '{ print $2 }')
    fi
    if [[ "$have" == "$want" ]]; then
        return
    fi
    log "installing wasm-bindgen-cli $want (found: ${have:-none}); this takes a few minutes once"
    cargo install wasm-bindgen-cli --version "$want"
}

# Prints the path of a wasm-opt at $BINARYEN_VERSION, installing it if need be; prints
# nothing when it cannot be had.
find_wasm_opt() {
    local candidate
    for candidate in "$(command -v wasm-opt || true)" "$TOOLS/binaryen-$BINARYEN_VERSION/node_modules/.bin/wasm-opt"; do
        if [[ -n "$candidate" && -x "$candidate" ]] &&
            "$candidate" --version 2>/dev/null | grep -q "version $BINARYEN_VERSION\b"; then
            echo "$candidate"
            return
        fi
    done
    if ! command -v npm >/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            log "installing node and npm (for wasm-opt)"
            apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
        else
            log "warning: no npm, so no wasm-opt: the page will be larger but works"
            return
        fi
    fi
    log "installing wasm-opt (npm binaryen@$BINARYEN_VERSION) into .tools/"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/binaryen-$BINARYEN_VERSION" \
        "binaryen@$BINARYEN_VERSION" >&2
    echo "$TOOLS/binaryen-$BINARYEN_VERSION/node_modules/.bin/wasm-opt"
}

main() {
    local version wasm_opt wasm
    version=$(bindgen_version)
    if [[ -z "$version" ]]; then
        echo "error: wasm-bindgen is not in Cargo.lock; run 'cargo metadata' once to lock it" >&2
        exit 1
    fi
    ensure_target
    ensure_wasm_bindgen "$version"
    wasm_opt=$(find_wasm_opt)

    log "building reco-web for $TARGET (profile $PROFILE)"
    # .cargo/config.toml's flags, and shorter source paths in panic locations: the registry's
    # and this checkout's directories are dropped from them (~0.5 KB brotli of strings).
    local flags="--cfg erase_components --remap-path-prefix=$ROOT/=" registry
    for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
        flags+=" --remap-path-prefix=$registry="
    done
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$flags" \
        cargo build -p reco-web --bin reco-web --target "$TARGET" --profile "$PROFILE" --target-dir "$TARGET_DIR"

    STAGE=$(mktemp -d)
    trap 'rm -rf "$STAGE"' EXIT
    local stage=$STAGE
    wasm-bindgen --target web --no-typescript --out-name reco-web --out-dir "$stage" \
        "$TARGET_DIR/$TARGET/$PROFILE/reco-web.wasm"
    wasm="$stage/reco-web_bg.wasm"
    if [[ -n "$wasm_opt" ]]; then
        log "optimising with $("$wasm_opt" --version)"
        # wasm-streams (a dependency of Leptos' server functions, which the page has none of)
        # exports three JS stream adapters, `IntoUnderlying{Source,ByteSource,Sink}`; nothing
        # constructs them, so their exports go first and -Oz drops the code behind them (~1 KB
        # brotli; the JS glue keeps the three unused classes). The producers and target-features
        # sections are for tools, not browsers (~0.3 KB brotli).
        "$wasm_opt" --remove-exports --pass-arg='remove-exports@*intounderlying*' -Os -Oz \
            --strip-producers --strip-target-features "$wasm" -o "$wasm.opt"
        mv "$wasm.opt" "$wasm"
    fi

    # Content-hashed names, so that `reco serve` lets browsers cache them for good.
    local js_hash wasm_hash css_hash
    wasm_hash=$(content_hash "$wasm")
    js_hash=$(content_hash "$stage/reco-web.js")
    css_hash=$(content_hash web/style.css)
    local js=reco-web-$js_hash.js wasm_name=reco-web-${wasm_hash}_bg.wasm css=style-$css_hash.css
    mv "$stage/reco-web.js" "$stage/$js"
    mv "$wasm" "$stage/$wasm_name"
    cp web/style.css "$stage/$css"
    # index.html is Trunk's; swap its two data-trunk links for what Trunk would emit.
    sed -e "s|<link data-trunk rel=\"css\" href=\"web/style.css\" */>|<link rel=\"stylesheet\" href=\"./$css\" />|" \
        -e "s|<link data-trunk rel=\"rust\" [^>]*/>|<link rel=\"modulepreload\" href=\"./$js\" />\n    <link rel=\"preload\" href=\"./$wasm_name\" as=\"fetch\" type=\"application/wasm\" crossorigin=\"anonymous\" />\n    <script type=\"module\">import init from \"./$js\"; init({ module_or_path: \"./$wasm_name\" });</script>|" \
        index.html >"$stage/index.html"
    if grep -q 'data-trunk' "$stage/index.html"; then
        echo "error: index.html has a data-trunk link this script does not know; update it" >&2
        exit 1
    fi

    # Precompressed copies, which `reco serve` sends to clients that accept them.
    ensure_brotli
    for file in "$stage"/*; do
        gzip -9 -n -k "$file"
        if command -v brotli >/dev/null; then
            brotli -q 11 -k "$file"
        fi
    done
    command -v brotli >/dev/null || log "no brotli on PATH (Debian package brotli): gzip copies only"

    rm -rf "$DIST"
    mkdir -p "$DIST"
    cp "$stage"/* "$DIST"/

    local raw gz br=0
    raw=$(wc -c <"$DIST/$wasm_name")
    gz=$(wc -c <"$DIST/$wasm_name.gz")
    [[ -f "$DIST/$wasm_name.br" ]] && br=$(wc -c <"$DIST/$wasm_name.br")
    log "built $DIST/ (serve it with: reco serve --web-dir $DIST)"
    awk -v raw="$raw" -v gz="$gz" -v br="$br" 'BEGIN {
        printf "wasm size: %d bytes raw (%.1f KiB), %d gzip -9 (%.1f KiB), %d brotli -q 11 (%.1f KiB)\n",
            raw, raw / 1024, gz, gz / 1024, br, br / 1024
    }'
}

# brotli for the precompressed copies: Debian's package when we may install it.
ensure_brotli() {
    if command -v brotli >/dev/null; then
        return
    fi
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing brotli (for precompressed page files)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq brotli >/dev/null || true
    fi
}

# The first 16 hex digits of a file's SHA-256.
content_hash() {
    sha256sum "$1" | cut -c1-16
}

main "$@"
