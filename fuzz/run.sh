#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 300), one after the other, at low priority.
#   fuzz/run.sh [seconds] [target...]
# New inputs go to fuzz/work/<target>/ (ignored by git); the checked-in seeds in
# fuzz/corpus/<target>/ are read, never written. Crashes land in fuzz/artifacts/<target>/:
# turn each into a regression test under tests/ and fix it.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); nightly features come from RUSTC_BOOTSTRAP=1
# on the stable toolchain.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs="${1:-300}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_split hot_codec field_table connection)
fi
export RUSTC_BOOTSTRAP=1
# Thread-exit bookkeeping that LeakSanitizer mistakes for leaks (see lsan.supp).
export LSAN_OPTIONS="suppressions=$PWD/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
cargo fuzz build
status=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "== $t: ${secs}s"
    # -rss_limit_mb: the connection target runs a whole broker per input.
    if ! nice -n 10 cargo fuzz run "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=8192 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        2>&1 | tee "work/$t.log" | grep -E "^(#[0-9]+\s+(DONE|INITED)|stat::number_of_executed_units|==[0-9]+==|SUMMARY|Test unit written|panicked)"; then
        :
    fi
    if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
        echo "!! $t: crash inputs in fuzz/artifacts/$t/"
        status=1
    fi
done
exit $status
