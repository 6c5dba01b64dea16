//! dkms's version ordering (`VER()`): numeric runs of one or two digits are
//! zero-padded to three, then the strings compare byte-wise. Used for
//! BUILD_EXCLUSIVE_KERNEL_MIN/MAX and for picking a module's latest version.

use std::cmp::Ordering;

/// The comparable form of a version string, e.g. `6.1.0-18-amd64` ->
/// `006.001.000-018-amd064`.
pub fn normalize(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 8);
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let digit = b[i].is_ascii_digit();
        while i < b.len() && b[i].is_ascii_digit() == digit {
            i += 1;
        }
        let run = &v[start..i];
        if digit && run.len() < 3 {
            out.push_str(&"00"[..3 - run.len()]);
        }
        out.push_str(run);
    }
    out
}

pub fn compare(a: &str, b: &str) -> Ordering {
    normalize(a).cmp(&normalize(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_dkms_examples() {
        assert_eq!(normalize("6.1.0-18-amd64"), "006.001.000-018-amd064");
        assert_eq!(normalize("3.5-rc2"), "003.005-rc002");
        assert_eq!(normalize("1000.1"), "1000.001");
        assert_eq!(compare("3.5-rc2", "3.5"), Ordering::Greater);
        assert_eq!(compare("4.12-rc1", "4.12"), Ordering::Greater);
        assert_eq!(compare("6.1.0-54-amd64", "6.1.0-56-amd64"), Ordering::Less);
        assert_eq!(compare("0.12.7", "0.12.10"), Ordering::Less);
        assert_eq!(compare("2.0", "2.0"), Ordering::Equal);
    }
}
