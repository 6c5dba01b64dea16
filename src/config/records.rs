//! The module records of a dkms.conf (`BUILT_MODULE_NAME[i]`,
//! `BUILT_MODULE_LOCATION[i]`, `DEST_MODULE_NAME[i]`,
//! `DEST_MODULE_LOCATION[i]`, `STRIP[i]`) read into [`ModuleSpec`]s with
//! dkms's defaults and checks, and each record's BUILD_EXCLUSIVE verdict for
//! the kernel. Pure.

use super::directives::Context;
use super::exclusive::Exclusive;
use super::shell::Raw;
use crate::sys::names::{self, Kind};

/// One kernel module the package builds (one `[i]` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    pub index: usize,
    pub built_name: String,
    /// Relative to the build directory, "" or ending in '/'.
    pub built_location: String,
    pub dest_name: String,
    /// Where it is installed under `/lib/modules/K` (the distribution's
    /// location where dkms replaces DEST_MODULE_LOCATION), e.g. `/updates/dkms`.
    pub dest_location: String,
    /// DEST_MODULE_LOCATION as the file says it.
    pub declared_location: String,
    pub strip: bool,
    /// The BUILD_EXCLUSIVE rule that keeps this module out of this kernel.
    pub excluded_by: Option<String>,
}

impl ModuleSpec {
    /// Admitted by BUILD_EXCLUSIVE for this kernel.
    pub fn buildable(&self) -> bool {
        self.excluded_by.is_none()
    }
}

fn get<'a>(raw: &'a Raw, name: &str, i: usize) -> &'a str {
    raw.get(name, i).unwrap_or("")
}

/// Reads `num` records; `global` is the package's BUILD_EXCLUSIVE (index 0),
/// which applies to every module. Returns the records and whether any
/// module has BUILD_EXCLUSIVE values of its own.
pub fn read(
    raw: &Raw,
    c: &Context,
    num: usize,
    package_name: &str,
    global: &Exclusive,
    errors: &mut Vec<String>,
) -> (Vec<ModuleSpec>, bool) {
    let mut modules = Vec::new();
    let mut any_exclusive = false;
    // STRIP[i]: n* no, y* yes, empty inherits index 0 (whose own default is
    // the lowercase strip[0] a file may seed, else yes).
    let lower_no = |i: usize| get(raw, "strip", i).starts_with(['n', 'N']);
    let mut strip0 = !lower_no(0);
    for i in 0..num {
        let strip = match get(raw, "STRIP", i).chars().next() {
            Some('n' | 'N') => false,
            Some('y' | 'Y') => true,
            None if i == 0 => !lower_no(0),
            None => strip0,
            Some(_) => !lower_no(i),
        };
        if i == 0 {
            strip0 = strip;
        }
        let mut built_name = get(raw, "BUILT_MODULE_NAME", i).to_string();
        if built_name.is_empty() && num == 1 {
            built_name = package_name.to_string();
        }
        let dest_name = match get(raw, "DEST_MODULE_NAME", i) {
            "" => built_name.clone(),
            d => d.to_string(),
        };
        let mut built_location = get(raw, "BUILT_MODULE_LOCATION", i).to_string();
        if !built_location.is_empty() && !built_location.ends_with('/') {
            built_location.push('/');
        }
        let declared = get(raw, "DEST_MODULE_LOCATION", i).to_string();
        if built_name.is_empty() {
            errors.push(format!(
                "no BUILT_MODULE_NAME for record #{i}; set BUILT_MODULE_NAME[{i}]"
            ));
        } else if built_name.ends_with(".o") || built_name.ends_with(".ko") {
            errors.push(format!(
                "BUILT_MODULE_NAME[{i}] {built_name:?} ends in .o or .ko; drop the suffix"
            ));
        } else if built_name.contains('/') || names::problem(Kind::Module, &built_name).is_some() {
            errors.push(format!(
                "BUILT_MODULE_NAME[{i}] {built_name:?} is not a plain file name"
            ));
        }
        if dest_name.ends_with(".o") || dest_name.ends_with(".ko") {
            errors.push(format!(
                "DEST_MODULE_NAME[{i}] {dest_name:?} ends in .o or .ko; drop the suffix"
            ));
        } else if !dest_name.is_empty() && names::problem(Kind::Module, &dest_name).is_some() {
            errors.push(format!("DEST_MODULE_NAME[{i}] {dest_name:?} is not a plain file name"));
        }
        if declared.is_empty() {
            errors.push(format!(
                "no DEST_MODULE_LOCATION for record #{i}; set DEST_MODULE_LOCATION[{i}]=\"/updates\""
            ));
        } else if !["/kernel", "/updates", "/extra"]
            .iter()
            .any(|p| declared.starts_with(p))
        {
            errors.push(format!(
                "DEST_MODULE_LOCATION[{i}] {declared:?} does not begin with /kernel, /updates or /extra"
            ));
        } else if declared.split('/').any(|p| p == ".." || p == ".") || declared.contains(char::is_whitespace) {
            errors.push(format!(
                "DEST_MODULE_LOCATION[{i}] {declared:?} must not contain '..', '.' or spaces"
            ));
        }
        if built_location.starts_with('/') || built_location.split('/').any(|p| p == "..") {
            errors.push(format!("BUILT_MODULE_LOCATION[{i}] {built_location:?} leaves the build directory; use a relative path without '..'"));
        }
        let own = if c.per_module_exclusive && i > 0 {
            Exclusive::read(raw, i, "")
        } else {
            Exclusive::default()
        };
        any_exclusive |= own.is_set();
        let excluded_by = global.refusal(c).or_else(|| own.refusal(c));
        let dest_location = c.dest_override.map(str::to_string).unwrap_or_else(|| declared.clone());
        modules.push(ModuleSpec {
            index: i,
            built_name,
            built_location,
            dest_name,
            dest_location,
            declared_location: declared,
            strip,
            excluded_by,
        });
    }
    (modules, any_exclusive)
}
