#!/usr/bin/env bash
# Runs modsync's fuzz targets (cargo-fuzz, libFuzzer) for a bounded time each.
#
#   tests/fuzz/run.sh [TARGET...]        default: every target
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 30)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 10)
#   FUZZ_SANITIZER  none (default) or address; `address` needs the asan runtime
#                   of the toolchain and is much slower (the targets are safe Rust)
#   FUZZ_KEEP_CORPUS=1  keep tests/fuzz/corpus/<target> between runs instead of
#                   starting again from a copy of tests/fuzz/seeds/<target>
#   CARGO_BUILD_JOBS    build parallelism (default 1: the machine is shared)
#
# Each target starts from a copy of its seeds (and uses dicts/<target>.dict);
# findings are written to tests/fuzz/artifacts/<target>/ (crash-*, timeout-*,
# oom-*) and the script exits 1 naming them. Reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none -a TARGET ARTIFACT
# then keep it as a regression test of the main crate.
#
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# unstable flags (-Zsanitizer with FUZZ_SANITIZER=address).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-30}
timeout=${FUZZ_TIMEOUT:-10}
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

all_targets=(dkms_conf_dump settings_toml hook_args state_tree)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$top"
flags=(--fuzz-dir tests/fuzz --sanitizer "$sanitizer" --debug-assertions)

echo "run.sh: building the fuzz targets (sanitizer: $sanitizer)" >&2
cargo fuzz build "${flags[@]}"

failed=()
for t in "${targets[@]}"; do
    corpus=tests/fuzz/corpus/$t
    artifacts=tests/fuzz/artifacts/$t
    if [ "${FUZZ_KEEP_CORPUS:-0}" != 1 ] || [ ! -d "$corpus" ]; then
        rm -rf "$corpus"
        mkdir -p "$corpus"
        cp tests/fuzz/seeds/"$t"/* "$corpus"/
    fi
    mkdir -p "$artifacts"
    dict=()
    if [ -f tests/fuzz/dicts/"$t".dict ]; then dict=(-dict=tests/fuzz/dicts/"$t".dict); fi
    log=tests/fuzz/artifacts/$t.log
    echo "run.sh: fuzzing $t for ${seconds}s" >&2
    set +e
    cargo fuzz run "${flags[@]}" "$t" "$corpus" -- \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" | sed "s/^/run.sh: $t: /" >&2 || true
    if [ $rc -ne 0 ]; then
        # The panic message (or libFuzzer's timeout/oom report), not the backtrace.
        grep -E -A2 '^thread .* panicked at' "$log" | grep -v '^stack backtrace' >&2 || true
        grep -E '^==[0-9]+== ERROR: libFuzzer|^SUMMARY: libFuzzer' "$log" >&2 || true
        found=$(grep -oE 'Test unit written to .*' "$log" | sed 's/^Test unit written to //' || true)
        [ -n "$found" ] || tail -n 40 "$log" >&2
        echo "run.sh: $t FAILED (exit $rc); input: ${found:-none written}; log: $log" >&2
        failed+=("$t${found:+ ($found)}")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: findings in: ${failed[*]}" >&2
    exit 1
fi
echo "run.sh: ${targets[*]}: no findings in ${seconds}s each" >&2
