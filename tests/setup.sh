#!/bin/bash
# Prepares a fresh Debian 12 machine (as root) for modsync's test suite.
# Idempotent: a second run only checks and prints the same summary.
#
# - build tools, qemu, debootstrap, pacman, dnf/rpm, systemd's
#   kernel-install, strace, and Debian's dkms (the reference the upstream
#   suite and the benchmarks compare against; its /usr/sbin/dkms is the
#   mount point the upstream-suite harness binds modsync over), and a Rust
#   toolchain when cargo is missing;
# - the headers of two Debian kernel ABIs (6.1.0-54 and 6.1.0-56 when the
#   archive still has them, else the two newest linux-headers-6.1.0-N-amd64);
# - their kernel images, downloaded (not installed) and extracted into
#   /var/cache/modsync-test/img-K (tests boot them under qemu);
# - the sources of real Debian *-dkms packages, extracted into
#   /var/cache/modsync-test/src/<module>-<version>/;
# - /var/cache/modsync-test/kernels: the two ABIs, space-separated;
# - the newest Debian 6.12 ABI's headers (tests/integration/explain.rs builds
#   the 6.1-era drivers against them), extracted, not installed (the 6.12
#   headers package depends on its kernel image) into
#   /var/cache/modsync-test/hdr-K/ with the common Makefile's include
#   pointed there; /var/cache/modsync-test/kernel-6.12 names K. It is not
#   in `kernels`, which the other tests use.
# - /var/cache/modsync-test/bookworm-minbase-2.tar, the debootstrap minbase
#   the chroot tests extract (apt.rs makes the same one when it is missing);
# - /var/cache/modsync-test/grub-disk/: a local apt repository for the GRUB
#   disk of tests/integration/grub_disk.rs: grub-pc and linux-base with their
#   dependencies, the two kernel images (hard links), a Packages index.
#
# Environment: MODSYNC_TEST_KERNELS="K1 K2" picks the kernels;
# MODSYNC_SETUP_NO_UPDATE=1 skips `apt-get update`.
# Details of apt's work go to /var/cache/modsync-test/setup.log.
set -euo pipefail

CACHE=/var/cache/modsync-test
LOG=$CACHE/setup.log
PREFERRED="6.1.0-54-amd64 6.1.0-56-amd64"
DKMS_PKGS="v4l2loopback-dkms ddcci-dkms vpoll-dkms openrazer-driver-dkms iptables-netflow-dkms"
TOOLS="gcc libc6-dev make bc patch kmod xz-utils zstd gzip openssl libssl-dev
  pkg-config cpio busybox-static ca-certificates curl qemu-system-x86
  debootstrap pacman-package-manager libalpm-dev libarchive-dev libcurl4-openssl-dev libgpgme-dev dnf python3-dnf dnf-plugins-core rpm
  createrepo-c dpkg-dev makepkg libarchive-tools systemd strace dkms logrotate iptables
  fdisk"
# iptables: iptables-netflow's configure needs its binary to reach the check
# of the libxtables-dev headers, which must stay absent (explain.rs)
# dpkg-dev, makepkg, libarchive-tools: dpkg-scanpackages, and Debian's repo-add
# (it sources makepkg's shell library and runs bsdtar) for fleet.rs
# fdisk: sfdisk partitions the GRUB disk image (grub_disk.rs)
# dnf-plugins-core: `dnf download`, which check --candidate runs (candidate.rs)

[ "$(id -u)" -eq 0 ] || { echo "setup.sh: run as root (sudo tests/setup.sh)" >&2; exit 1; }
mkdir -p "$CACHE/debs" "$CACHE/src"
: >"$LOG"
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

# Runs a command with its output in the log; on failure shows the log's tail.
quiet() {
  echo "+ $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "setup.sh: failed: $*" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}

missing_pkgs() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[@]}"
}

# 1. apt lists, once.
if [ "${MODSYNC_SETUP_NO_UPDATE:-0}" != 1 ]; then
  quiet apt-get "${APT_OPTS[@]}" update
fi

# 2. tools.
# shellcheck disable=SC2086
need=$(missing_pkgs $TOOLS)
if [ -n "$need" ]; then
  # shellcheck disable=SC2086
  quiet apt-get "${APT_OPTS[@]}" install -y --no-install-recommends $need
fi
# Debian's dnf-plugins-core (for `dnf download`, candidate.rs) turns on its
# `local` plugin, which Fedora ships apart and off: it would publish every
# package dnf installs into a gpgcheck'd repository that the unsigned test
# RPMs fail. Off, as on Fedora.
if [ -f /etc/dnf/plugins/local.conf ]; then
  sed -i '0,/^enabled *=.*/s//enabled = false/' /etc/dnf/plugins/local.conf
fi
echo "setup: tools ready ($(echo $TOOLS | wc -w) packages, installed now: ${need:-none})"

# 3. Rust, when cargo is missing (Debian 12's rustc is older than rust-version).
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  curl -sSf https://sh.rustup.rs -o "$CACHE/rustup-init.sh"
  quiet sh "$CACHE/rustup-init.sh" -y --profile minimal
  echo "setup: installed Rust with rustup into $HOME/.cargo"
fi

# 4. two kernel ABIs.
available() { apt-cache show "linux-headers-$1" >/dev/null 2>&1 && apt-cache show "linux-image-$1" >/dev/null 2>&1; }
if [ -n "${MODSYNC_TEST_KERNELS:-}" ]; then
  kernels="$MODSYNC_TEST_KERNELS"
else
  kernels=""
  for k in $PREFERRED; do available "$k" && kernels="$kernels $k"; done
  if [ "$(echo $kernels | wc -w)" -ne 2 ]; then
    kernels=$(apt-cache search --names-only '^linux-headers-6\.1\.0-[0-9]+-amd64$' \
      | awk '{print $1}' | sed 's/^linux-headers-//' | sort -V | tail -n 2 | tr '\n' ' ')
  fi
fi
kernels=$(echo $kernels)
[ "$(echo $kernels | wc -w)" -eq 2 ] || { echo "setup.sh: could not find two kernel ABIs (got: '$kernels')" >&2; exit 1; }

need=$(missing_pkgs $(for k in $kernels; do echo "linux-headers-$k"; done))
if [ -n "$need" ]; then
  # shellcheck disable=SC2086
  quiet apt-get "${APT_OPTS[@]}" install -y --no-install-recommends $need
fi
for k in $kernels; do
  [ -f "/usr/src/linux-headers-$k/Makefile" ] || { echo "setup.sh: /usr/src/linux-headers-$k is incomplete" >&2; exit 1; }
done

# 5. kernel images (downloaded, not installed) and dkms sources, extracted.
cd "$CACHE/debs"
download() {  # PACKAGE: the .deb of its candidate version, unless already here
  local p=$1 v
  v=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
  [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "setup.sh: $p is not in the archive" >&2; exit 1; }
  v=${v//:/%3a}
  ls "${p}_${v}_"*.deb >/dev/null 2>&1 || quiet apt-get "${APT_OPTS[@]}" download "$p"
  ls "${p}_${v}_"*.deb | head -n 1
}
for k in $kernels; do
  img=$CACHE/img-$k
  if [ ! -f "$img/boot/vmlinuz-$k" ] || [ ! -d "$img/lib/modules/$k/kernel" ]; then
    deb=$(download "linux-image-$k")
    rm -rf "$img.tmp" && mkdir -p "$img.tmp"
    dpkg-deb -x "$deb" "$img.tmp"
    rm -rf "$img" && mv "$img.tmp" "$img"
  fi
done
echo "setup: kernels $kernels (headers in /usr/src, images in $CACHE/img-K)"

srcs=""
for p in $DKMS_PKGS; do
  deb=$(download "$p")
  stamp="$CACHE/src/.$(basename "$deb" .deb)"
  if [ ! -e "$stamp" ]; then
    x=$(mktemp -d "$CACHE/src/.x.XXXXXX")
    dpkg-deb -x "$deb" "$x"
    for d in "$x"/usr/src/*/; do
      d=${d%/}
      rm -rf "$CACHE/src/$(basename "$d")"
      mv "$d" "$CACHE/src/"
      echo "$(basename "$d")" >>"$x.names"
    done
    mv "$x.names" "$stamp"
    rm -rf "$x"
  fi
  srcs="$srcs $(tr '\n' ' ' <"$stamp")"
done
echo "setup: dkms sources in $CACHE/src: $(echo $srcs)"

# 6. the newest 6.12 ABI's headers, extracted into their own root.
k612=$(apt-cache search --names-only '^linux-headers-6\.12\.[0-9]+\+deb12-amd64$' \
  | awk '{print $1}' | sed 's/^linux-headers-//' | sort -V | tail -n 1)
[ -n "$k612" ] || { echo "setup.sh: no linux-headers-6.12.*+deb12-amd64 in the archive" >&2; exit 1; }
hdr=$CACHE/hdr-$k612
if [ ! -f "$hdr/usr/src/linux-headers-$k612/Makefile" ]; then
  abi=${k612%-amd64}
  rm -rf "$hdr.tmp" && mkdir -p "$hdr.tmp"
  for p in "linux-headers-$k612" "linux-headers-$abi-common" "linux-kbuild-$abi"; do
    dpkg-deb -x "$(download "$p")" "$hdr.tmp"
  done
  sed -i "s#^include /usr/src/#include $hdr/usr/src/#" "$hdr.tmp/usr/src/linux-headers-$k612/Makefile"
  rm -rf "$hdr" && mv "$hdr.tmp" "$hdr"
fi
echo "$k612" >"$CACHE/kernel-6.12"
echo "setup: kernel $k612 headers in $hdr/usr/src (not installed)"

# 7. the acceptance checks' own cache, when they sit beside the repository
# (tests/integration runs the upstream-suite check, which fills it otherwise)
acc="$(dirname "$(readlink -f "$0")")/../../shared/acceptance/env.sh"
if [ -x "$acc" ]; then
  quiet "$acc"
  echo "setup: acceptance cache ready ($acc)"
fi

# 8. the debootstrap minbase the chroot tests share (apt.rs, fleet, grub_disk):
# keep the name, the packages and the mirror in step with apt.rs
# (BASE_TARBALL, BASE_PACKAGES, mirrors()).
base=$CACHE/bookworm-minbase-2.tar
if [ ! -s "$base" ]; then
  mirror=${MODSYNC_TEST_MIRROR:-}
  if [ -z "$mirror" ] && grep -qx 'ID=debian' /etc/os-release; then
    mirror=$( { grep -h '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | sed 's/^URIs://'
                grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}'
              } | tr ' ' '\n' | grep -v -e '^$' -e security | head -n 1 || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  build=$CACHE/build.setup.$$
  rm -rf "$build"
  quiet debootstrap --variant=minbase \
    --include=ca-certificates,make,gcc,libc6-dev,kmod,patch,bc,openssl,xz-utils,zstd,initramfs-tools,cpio,man-db,bash-completion,systemd \
    bookworm "$build" "$mirror"
  # services must not start inside the chroots
  printf '#!/bin/sh\nexit 101\n' >"$build/usr/sbin/policy-rc.d"
  chmod 755 "$build/usr/sbin/policy-rc.d"
  tar -C "$build" -cf "$base.$$" .
  mv "$base.$$" "$base"
  rm -rf --one-file-system "$build"
fi
echo "setup: debootstrap minbase in $base"

# 9. the GRUB disk's local repository: every package grub-pc and linux-base
# depend on (the image's apt installs only what its minbase lacks), the two
# kernel images, and the index (rewritten only when it changes).
repo=$CACHE/grub-disk
mkdir -p "$repo"
cd "$repo"
for p in $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
             --no-breaks --no-replaces --no-enhances grub-pc linux-base | grep '^[a-z0-9]' | sort -u); do
  download "$p" >/dev/null
done
for k in $kernels; do
  deb=$(cd "$CACHE/debs" && download "linux-image-$k")
  ln -f "$CACHE/debs/$deb" "$repo/" 2>/dev/null || cp "$CACHE/debs/$deb" "$repo/"
done
dpkg-scanpackages -m . >Packages.new 2>>"$LOG"
if cmp -s Packages.new Packages; then rm Packages.new; else mv Packages.new Packages; fi
echo "setup: GRUB disk repository in $repo ($(grep -c '^Package:' Packages) packages)"

echo "$kernels" >"$CACHE/kernels"
echo "setup: done; $CACHE/kernels = $kernels"
