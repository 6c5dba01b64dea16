#!/bin/bash
# The whole test suite, as CI runs it on a fresh Debian 12 machine (root):
# prepare the machine (tests/setup.sh), check formatting and clippy, fuzz the
# parsers for a bounded time, then `cargo test --release` for every test
# target of the repository (unit tests and tests/integration). Extra arguments go to cargo test
# (e.g. `tests/ci.sh --features alpm`, `tests/ci.sh --test integration`).
# Exits with cargo's status.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh
MODSYNC_TEST_KERNELS="$(cat /var/cache/modsync-test/kernels)"
export MODSYNC_TEST_KERNELS
# Tests that boot a kernel image look for img-K in this cache (setup.sh fills it).
export MODSYNC_ACCEPTANCE_CACHE="${MODSYNC_ACCEPTANCE_CACHE:-/var/cache/modsync-test}"
# cargo from rustup when it is not on PATH (setup.sh installs it there when missing)
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# style gates: formatting and clippy with warnings as errors
cargo fmt --check
cargo clippy --release --all-targets --features alpm -- -D warnings
echo "ci: cargo fmt and clippy clean"

# bounded fuzz runs of the parsers (tests/fuzz); a finding fails CI
fuzz_rc=0
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" tests/fuzz/run.sh || fuzz_rc=$?
echo "ci: fuzz runs exited $fuzz_rc"

echo "ci: cargo test --release --no-fail-fast --features alpm $* (kernels: $MODSYNC_TEST_KERNELS)"
start=$(date +%s)
set +e
cargo test --release --no-fail-fast --features alpm "$@"
rc=$?
set -e
echo "ci: cargo test exited $rc after $(( $(date +%s) - start )) s"
[ $rc -ne 0 ] && exit $rc
exit $fuzz_rc
