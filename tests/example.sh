#!/bin/bash
# modsync's main job, on this machine: build the bundled example module
# (tests/fixtures/hello-1.0) for every installed kernel that has headers,
# install it, and show the status. This REALLY changes the host: it adds
# /usr/src/hello-1.0, state under /var/lib/dkms and hello.ko under
# /lib/modules/K/updates/dkms (undo: `modsync remove hello/1.0 --all`).
# Run as root on Debian 12: sudo tests/example.sh
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo build --release --quiet
modsync="${CARGO_TARGET_DIR:-target}/release/modsync"

if "$modsync" status hello/1.0 | grep -q '^hello/1\.0[,:]'; then
  echo "example: hello/1.0 is already added"
else
  "$modsync" add tests/fixtures/hello-1.0
fi

kernels=()
for dir in /lib/modules/*/; do
  k=$(basename "$dir")
  [ -d "/lib/modules/$k/build/include" ] && kernels+=(-k "$k")
done
if [ ${#kernels[@]} -eq 0 ]; then
  echo "example: no kernel in /lib/modules has headers (build/include); install linux-headers-\$(uname -r)" >&2
  exit 1
fi
"$modsync" install hello/1.0 "${kernels[@]}"
"$modsync" status
