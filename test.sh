#!/usr/bin/env bash
# Runs every test: unit and integration tests (cargo), then the pika and amqplib interop scripts
# against a freshly built broker (interop/run.sh installs the clients it needs).
# tests/browser/install.sh installs Debian's chromium for the dashboard test first; if it cannot,
# that one test skips and says so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bash tests/browser/install.sh || echo "test.sh: no chromium: the dashboard test will be skipped" >&2
cargo test --all-targets
bash interop/run.sh
