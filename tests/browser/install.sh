#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard test (tests/dashboard.rs) when it is missing.
# Called by ./test.sh; CI starts from a clean machine. Exits 0 when chromium is available
# afterwards, 1 otherwise (the test then skips with a message saying so).
set -uo pipefail

have() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

if have; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/browser/install.sh: chromium is missing and cannot be installed here (needs root and apt-get)" >&2
    exit 1
fi
echo "tests/browser/install.sh: installing chromium (Debian package) for the dashboard test" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 \
    || apt-get install -y -qq chromium >/dev/null 2>&1
if have; then
    exit 0
fi
echo "tests/browser/install.sh: could not install chromium" >&2
exit 1
