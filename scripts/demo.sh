#!/usr/bin/env bash
# The whole demo from one command: builds the feed page and the server (installing the few
# tools the page needs on first run), then serves gRPC, gRPC-Web and the page on one port.
# Extra arguments go to `reco serve` (e.g. --addr 127.0.0.1:9000, --data-dir DIR).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/build-web.sh
cargo build --release --locked -p reco
echo "==> open http://127.0.0.1:8888/ (or the --addr you gave); Ctrl-C stops the server" >&2
exec target/release/reco serve --web-dir dist "$@"
