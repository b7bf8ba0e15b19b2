#!/usr/bin/env bash
# Runs every test: unit and integration tests (cargo), then the pika and amqplib interop scripts
# against a freshly built broker (interop/run.sh installs the clients it needs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

cargo test --all-targets
bash interop/run.sh
