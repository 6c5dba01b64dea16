//! modsync's integration tests, in one binary: dkms's own test suites run
//! against modsync ([`upstream`]), the engine against real kernel headers
//! and real Debian `*-dkms` sources ([`engine`]), failed builds that say
//! why and what to do ([`explain`]), input that must be refused
//! with the tree left as it was ([`hostile`]), each config.toml setting
//! ([`settings`]), in-kernel modules of the same name ([`original`]),
//! modules loaded by the real kernel under qemu ([`qemu`]), and the
//! package-manager hooks run by the real apt/dpkg ([`apt`]), pacman
//! ([`pacman`]) and dnf ([`dnf`], over [`overlay_root`]), the history of
//! hook runs with `modsync log` ([`history`]), failures explained
//! ([`explain`]), the boot-time safety net and dkms's autoinstaller path
//! ([`boot`]), modsync.toml manifests converted from real dkms.conf files
//! ([`manifest`]), and one build cache shared by two build hosts building
//! at once ([`shared_cache`]), tarballs made and loaded by modsync and
//! the real dkms, hostile ones refused ([`tarball`]), native packages of
//! built modules checked and installed with the real dpkg-deb/dpkg, rpm and
//! pacman ([`packages`], [`packages_install`]), and module packages exported
//! by a build host and installed on compiler-less apt, dnf, rpm and pacman
//! targets, loaded under qemu ([`fleet`]), and the boot guard on
//! systemd-boot and grubby configurations ([`boot_guard`]) and with the real
//! GRUB booted from a disk under qemu ([`grub_guard`]). Shared helpers are in
//! [`support`], [`guest`] (qemu boots), [`grub_disk`] (a GRUB disk booted
//! under qemu) and [`fleet_support`]. Prerequisites come from `tests/setup.sh`; a
//! missing one fails the test (see [`support::require`]).

mod apt;
mod boot;
mod boot_guard;
mod candidate;
mod check;
mod dnf;
mod engine;
mod explain;
mod fleet;
mod fleet_support;
mod grub_disk;
mod grub_guard;
mod guest;
mod history;
mod hostile;
mod manifest;
mod original;
mod overlay_root;
mod packages;
mod packages_install;
mod pacman;
mod qemu;
mod settings;
mod shared_cache;
mod support;
mod tarball;
mod upstream;
