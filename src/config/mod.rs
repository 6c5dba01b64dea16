//! Configuration inputs: dkms.conf (evaluated by bash as dkms does), the
//! directives read from it, and the settings of modsync and of dkms's
//! framework.conf.

pub mod directives;
pub mod dkms_conf;
pub mod settings;
