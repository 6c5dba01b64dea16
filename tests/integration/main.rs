//! modsync's integration tests, in one binary: dkms's own test suites run
//! against modsync ([`upstream`]), the engine against real kernel headers
//! and real Debian `*-dkms` sources ([`engine`]), input that must be refused
//! with the tree left as it was ([`hostile`]), modules loaded by the real
//! kernel under qemu ([`qemu`]), and the package-manager hooks run by the
//! real apt/dpkg ([`apt`]), pacman ([`pacman`]) and dnf ([`dnf`]). Shared
//! helpers are in [`support`]. Prerequisites come from `tests/setup.sh`;
//! with MODSYNC_E2E_REQUIRE=1 (`tests/ci.sh`) a missing one fails.

mod engine;
mod hostile;
mod support;
mod upstream;
