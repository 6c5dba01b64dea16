#!/bin/bash
# Side-by-side benchmark of modsync against the reference dkms (Debian's
# dkms package) on the same real Debian *-dkms sources and the same kernel.
# Each tool runs in its own private mount namespace (tmpfs state trees, a
# private copy of /lib/modules/K, an overlay over /usr/src), so the host is
# never written and neither tool sees the other's work. Prints, per round:
#   autoinstall -k K of all modules (nothing built yet)
#   cache-hit reinstall: remove --all + add + autoinstall again
#   status (median of 5 runs), and whether both print the same lines
# and the ratios modsync/dkms. Usage (root):
#   tests/bench/compare-dkms.sh [ROUNDS]      MODULES="pkg ..." KERNEL=K override
set -euo pipefail
ROUNDS=${1:-1}
here=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=/var/cache/modsync-test
B=${MODSYNC:-$here/target/release/modsync}
[ -x "$B" ] || (cd "$here" && cargo build --release -q)
command -v dkms >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dkms >/dev/null
KERNEL=${KERNEL:-$(tr ' ' '\n' < $CACHE/kernels 2>/dev/null | tail -1)}
[ -n "$KERNEL" ] && [ -d /usr/src/linux-headers-$KERNEL ] || { echo "no kernel headers: run tests/setup.sh first" >&2; exit 2; }
PKGS=${MODULES:-"v4l2loopback-dkms ddcci-dkms gost-crypto-dkms jool-dkms tp-smapi-dkms dm-writeboost-dkms evdi-dkms apfs-dkms vpoll-dkms acpi-call-dkms"}

# real sources, fetched once from Debian's archive
mkdir -p $CACHE/bench-debs $CACHE/bench-src
for p in $PKGS; do
  ls $CACHE/bench-debs/${p}_*.deb >/dev/null 2>&1 || (cd $CACHE/bench-debs && apt-get download -qq $p >/dev/null 2>&1) || { echo "cannot download $p" >&2; exit 2; }
done
for d in $CACHE/bench-debs/*.deb; do
  s=$CACHE/bench-src/.$(basename $d .deb)
  [ -e $s ] || { x=$(mktemp -d); dpkg-deb -x $d $x; cp -a $x/usr/src/. $CACHE/bench-src/; rm -rf $x; touch $s; }
done
[ -d $CACHE/img-$KERNEL/lib/modules/$KERNEL ] || { echo "no extracted image for $KERNEL: run tests/setup.sh" >&2; exit 2; }

# run TOOL SCRIPT: SCRIPT runs in a fresh isolated world; $T is the tool
world() {
  local tool=$1 script=$2 w
  w=$(mktemp -d /tmp/bench.XXXXXX)
  mkdir -p $w/lib/modules $w/up $w/work
  cp -a $CACHE/img-$KERNEL/lib/modules/$KERNEL $w/lib/modules/
  ln -sfn /usr/src/linux-headers-$KERNEL $w/lib/modules/$KERNEL/build
  depmod -b $w $KERNEL
  T=$tool W=$w K=$KERNEL SRC=$CACHE/bench-src unshare --mount --propagation private bash -c '
    set -e
    for d in /var/lib/dkms /etc/dkms /etc/modsync /var/cache/modsync; do mkdir -p $d; mount -t tmpfs tmpfs $d; done
    mount --bind $W/lib/modules /lib/modules
    mount -t overlay overlay -o lowerdir=/usr/src,upperdir=$W/up,workdir=$W/work /usr/src
    cp -a $SRC/. /usr/src/
    for c in $SRC/*/dkms.conf; do $T add "$(dirname $c)" >/dev/null 2>&1 || { echo "add failed: $c" >&2; exit 3; }; done
    '"$script"
  rm -rf $w
}
secs() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; echo "$(date +%s.%N) - $s" | bc; }
export -f secs

measure='
  a=$(secs $T autoinstall -k $K)
  n=$($T status -k $K | grep -c ": installed" || true)
  for m in $($T status | sed -n "s#^\([^/]*/[^,:]*\)[,:].*#\1#p" | sort -u); do $T remove $m --all >/dev/null 2>&1; done
  for c in /usr/src/*/dkms.conf; do case $c in */linux-*) continue;; esac; $T add "$(dirname $c)" >/dev/null 2>&1 || true; done
  r=$(secs $T autoinstall -k $K)
  ts=(); for i in 1 2 3 4 5; do ts+=($(secs $T status)); done
  st=$(printf "%s\n" "${ts[@]}" | sort -n | sed -n 3p)
  $T status 2>&1 | sort > /tmp/bench-status-$(basename $T).txt
  echo "$a $r $st $n"'

for round in $(seq $ROUNDS); do
  read da dr ds dn < <(world /usr/sbin/dkms "$measure")
  read ma mr ms mn < <(world "$B" "$measure")
  same=no; diff -q /tmp/bench-status-dkms.txt /tmp/bench-status-modsync.txt >/dev/null && same=yes
  printf 'round %d, %s, %s modules\n' $round $KERNEL "$(echo $PKGS | wc -w)"
  printf '  autoinstall         dkms %7.2f s  modsync %7.2f s  ratio %.3f  (installed: %s vs %s)\n' $da $ma $(echo "scale=4; $ma/$da" | bc) $dn $mn
  printf '  cache-hit reinstall dkms %7.2f s  modsync %7.2f s  ratio %.3f\n' $dr $mr $(echo "scale=4; $mr/$dr" | bc)
  printf '  status              dkms %7.3f s  modsync %7.3f s  ratio %.4f  (same lines: %s)\n' $ds $ms $(echo "scale=5; $ms/$ds" | bc) $same
done
