#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the stable toolchain
# (the flags cargo-fuzz passes, without a sanitizer, which needs nightly) and runs each for a
# bounded time. Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Each target starts from its corpus in fuzz/corpus/TARGET (read-only here: new inputs go to
# fuzz/target/corpus/TARGET). A crash, a hang or a broken property stops the run with a non-zero
# exit; the input is saved under fuzz/artifacts/TARGET/. Fix the bug, then copy the input into
# fuzz/regressions/TARGET/, where `cargo test --test fuzz_inputs` replays it on every run.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(case_file checkpoint schedule_json)
fi
host="$(rustc -vV | sed -n 's/^host: //p')"

export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing"
# --target keeps the instrumentation off build scripts and proc macros, as cargo-fuzz does.
cargo build --release --locked --target "$host" --bins

for t in "${targets[@]}"; do
    echo "=== fuzzing $t for ${seconds}s"
    mkdir -p "target/corpus/$t" "artifacts/$t"
    status=0
    "target/$host/release/$t" "target/corpus/$t" "corpus/$t" "regressions/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"target/$t.log" 2>&1 || status=$?
    # The progress lines are many; the start, the end and any finding are what matter.
    grep -Ev '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' "target/$t.log" | tail -n 40
    if [ "$status" -ne 0 ]; then
        echo "fuzz target $t found a failure (exit $status): see fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
