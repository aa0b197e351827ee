#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a while; exits non-zero on the first finding
# (crash, panic, out-of-memory, timeout), whose input libFuzzer writes under
# fuzz/artifacts/<target>/. See docs/fuzzing.md.
#
#     fuzz/run.sh                      # every target, 30 s each, two at a time
#     fuzz/run.sh 600 image_decode     # one target for 10 minutes
#
# Environment: FUZZ_JOBS (targets run at once; default 2), FUZZ_ARGS (more libFuzzer flags),
# DIFFBIR_SHARED / DIFFBIR_FIXTURES (where the seed files are, for seed.sh).
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
# Paths given relative to where the script was started from.
for var in DIFFBIR_FIXTURES DIFFBIR_SHARED; do
    if [[ -n "${!var:-}" ]]; then
        export "$var=$(realpath -m "${!var}")"
    fi
done
cd "$fuzz"

seconds="${1:-30}"
shift || true
if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz")
fi
jobs="${FUZZ_JOBS:-2}"

# Stable toolchain: no sanitizer (`-s none` uses only stable coverage flags); debug
# assertions and overflow checks stay on (cargo-fuzz's default). 16 codegen units: a faster
# build for a slightly slower fuzzer.
build=(--fuzz-dir "$fuzz" --target-dir "$fuzz/target" -s none --codegen-units 16)
# The lock file is committed: refuse to resolve anything new.
cargo metadata --locked --format-version 1 --manifest-path "$fuzz/Cargo.toml" >/dev/null
cargo fuzz build "${build[@]}"
"$fuzz/seed.sh"

bin="$fuzz/target/x86_64-unknown-linux-gnu/release"
run_one() {
    local target="$1" dict=()
    [[ -f "$fuzz/dicts/$target.dict" ]] && dict=("-dict=$fuzz/dicts/$target.dict")
    mkdir -p "$fuzz/artifacts/$target"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$bin/$target" "$fuzz/corpus/$target" "${dict[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$fuzz/artifacts/$target/" -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$fuzz/artifacts/$target.log" 2>&1
}

failed=()
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    batch=("${targets[@]:i:jobs}")
    pids=()
    for target in "${batch[@]}"; do
        run_one "$target" &
        pids+=($!)
    done
    for k in "${!batch[@]}"; do
        target="${batch[$k]}"
        if wait "${pids[$k]}"; then
            runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$fuzz/artifacts/$target.log")
            speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$fuzz/artifacts/$target.log")
            printf '%-16s ok: %s runs, %s/s\n' "$target" "$runs" "$speed"
        else
            printf '%-16s FINDING (log: fuzz/artifacts/%s.log)\n' "$target" "$target"
            grep -E "panicked at|ERROR: libFuzzer|Test unit written|SUMMARY" \
                "$fuzz/artifacts/$target.log" | head -n 20 || true
            failed+=("$target")
        fi
    done
done
if ((${#failed[@]} > 0)); then
    echo "fuzzing found problems in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
