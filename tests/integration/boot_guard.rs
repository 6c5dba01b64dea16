//! The boot guard against a systemd-boot configuration in a [`World`]
//! (`T/efi/loader/loader.conf`, one Type #1 entry per test kernel,
//! `T/boot/vmlinuz-K`) and the real hello build: with `required =
//! ["hello"]`, installing hello for the older kernel K0 only keeps K0 the
//! default (loader.conf names K0's entry, `status` and the boot run say so
//! on stderr, `status --json` ends with the hold); the kernel-install hook that builds
//! hello for K1 lifts it (loader.conf as it was, the message ends the
//! hook's output); a `default` the user writes wins, even over a hold in
//! force; `boot_guard =
//! false` lifts a hold and then changes nothing. With grubby (a recording
//! stand-in in the world's root): the held kernel's image is set as the
//! default, lifting sets the newest's only when the default is still the
//! guard's, and `UPDATEDEFAULT=no` keeps grubby from being run. GRUB's
//! configuration is unit-tested beside its code and booted for real by
//! [`crate::grub_disk`].

use crate::support::{require_root, test_kernels, World};
use std::fs;

const TEST: &str = "boot_guard";
const LOADER_CONF: &str = "timeout 3\n#console-mode keep\n";

fn setup(w: &World, ks: &[String]) {
    let cfg = w.p("etc/modsync/config.toml");
    let mut c = fs::read_to_string(&cfg).unwrap();
    c.push_str("required = [\"hello\"]\n");
    fs::write(&cfg, c).unwrap();
    fs::create_dir_all(w.p("efi/loader/entries")).unwrap();
    fs::create_dir_all(w.p("boot")).unwrap();
    fs::write(w.p("efi/loader/loader.conf"), LOADER_CONF).unwrap();
    for k in ks {
        fs::write(w.p(&format!("boot/vmlinuz-{k}")), "").unwrap();
        fs::write(
            w.p(&format!("efi/loader/entries/debian-{k}.conf")),
            format!("title Debian {k}\nversion {k}\nlinux /vmlinuz-{k}\ninitrd /initrd.img-{k}\n"),
        )
        .unwrap();
    }
}

fn loader_conf(w: &World) -> String {
    fs::read_to_string(w.p("efi/loader/loader.conf")).unwrap()
}

fn hold_in_json(w: &World) -> Option<serde_json::Value> {
    w.status_json().into_iter().find_map(|l| l.get("boot_guard").cloned())
}

#[test]
fn a_kernel_lacking_a_required_module_is_not_the_default_until_it_has_it() {
    require_root(TEST);
    let ks = test_kernels();
    let (k0, k1) = (ks[0].as_str(), ks[ks.len() - 1].as_str());
    let w = World::new(&ks);
    w.add_fixture("hello-1.0");
    setup(&w, &ks);

    // hello for K0 only: K1 lacks it, K0 stays the default
    let o = w.ok(&["install", "hello/1.0", "-k", k0]);
    assert!(
        o.stderr.contains(&format!("systemd-boot keeps booting {k0}")) && o.stderr.contains("hello missing for kernel"),
        "{}",
        o.show()
    );
    assert_eq!(
        loader_conf(&w)
            .matches(&format!("\ndefault debian-{k0}.conf\n"))
            .count(),
        1,
        "{}",
        loader_conf(&w)
    );
    assert!(
        o.stderr
            .contains(&format!("Why: hello: hello/1.0 is not installed for {k1}")),
        "{}",
        o.show()
    );
    let st = w.ok(&["status"]);
    assert!(st.stderr.contains(&format!("keeps booting {k0}")), "{}", st.show());
    let hold = hold_in_json(&w).expect("status --json ends with the hold");
    assert_eq!(
        (hold["kernel"].as_str(), hold["newest"].as_str()),
        (Some(k0), Some(k1)),
        "{hold}"
    );
    assert_eq!(hold["missing"], serde_json::json!(["hello"]));
    assert!(
        hold["reasons"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("hello: hello/1.0")),
        "{hold}"
    );
    let b = w.ok(&["boot", "-k", k0, "--no-load"]);
    assert!(
        b.stderr.contains(&format!("keeps booting {k0}")),
        "the boot run says it: {}",
        b.show()
    );
    let g = w.ok(&["boot-guard", "--json"]);
    assert!(g.stdout.contains(&format!("\"kernel\":\"{k0}\"")), "{}", g.show());

    // the hook that builds hello for K1 lifts the hold, and says so last
    let o = w.hook(&["kernel-install", "add", k1]);
    assert_eq!(loader_conf(&w), LOADER_CONF, "{}", o.show());
    let last = o.stderr.trim_end().lines().last().unwrap_or("");
    assert!(
        last.contains(&format!("boots the newest kernel, {k1}, again")),
        "{}",
        o.show()
    );
    assert_eq!(hold_in_json(&w), None);

    // a default the user writes is theirs, even over a hold in force
    w.ok(&["uninstall", "hello/1.0", "-k", k1]);
    assert!(loader_conf(&w).contains(&format!("default debian-{k0}.conf")));
    let line = format!("default debian-{k1}.conf\n");
    fs::write(w.p("efi/loader/loader.conf"), loader_conf(&w) + &line).unwrap();
    let o = w.ok(&["boot-guard"]);
    assert!(o.stderr.contains("leaves systemd-boot as it is"), "{}", o.show());
    assert_eq!(loader_conf(&w), format!("{LOADER_CONF}{line}"));
    assert_eq!(hold_in_json(&w), None);
    let o = w.ok(&["install", "hello/1.0", "-k", k0, "--force"]);
    assert!(o.stderr.contains("leaves systemd-boot as it is"), "{}", o.show());
    assert_eq!(loader_conf(&w), format!("{LOADER_CONF}{line}"));

    // boot_guard = false lifts a hold, then changes nothing
    fs::write(w.p("efi/loader/loader.conf"), LOADER_CONF).unwrap();
    w.ok(&["boot-guard"]);
    assert!(loader_conf(&w).contains(&format!("default debian-{k0}.conf")));
    let cfg = w.p("etc/modsync/config.toml");
    fs::write(&cfg, fs::read_to_string(&cfg).unwrap() + "boot_guard = false\n").unwrap();
    let o = w.ok(&["boot-guard"]);
    assert!(o.stderr.contains("boot_guard = false"), "{}", o.show());
    assert_eq!(loader_conf(&w), LOADER_CONF);
    w.ok(&["uninstall", "hello/1.0", "-k", k0]);
    w.ok(&["install", "hello/1.0", "-k", k0]);
    assert_eq!(
        loader_conf(&w),
        LOADER_CONF,
        "with the guard off the boot configuration does not change"
    );
    assert_eq!(hold_in_json(&w), None);
}

/// A stand-in for Fedora's grubby in the world's root (run by the guard as
/// `chroot T grubby ...`, with busybox's sh): it records its arguments and
/// keeps the default kernel image in a file, as grubby keeps it in grubenv.
const FAKE_GRUBBY: &str = r#"#!/bin/sh
echo "$*" >> /grubby.log
case "$1" in
    --set-default=*) echo "${1#--set-default=}" > /default ;;
    --default-kernel) read -r d < /default; echo "$d" ;;
esac
"#;

#[test]
fn grubby_is_told_the_held_kernel_and_updatedefault_no_is_respected() {
    require_root(TEST);
    crate::support::require(
        TEST,
        std::path::Path::new(crate::guest::BUSYBOX).is_file(),
        "no busybox-static",
    );
    let ks = test_kernels();
    let (k0, k1) = (ks[0].as_str(), ks[ks.len() - 1].as_str());
    let w = World::new(&ks);
    w.add_fixture("hello-1.0");
    let cfg = w.p("etc/modsync/config.toml");
    fs::write(&cfg, fs::read_to_string(&cfg).unwrap() + "required = [\"hello\"]\n").unwrap();
    for d in ["bin", "usr/sbin", "boot/loader/entries", "etc/sysconfig"] {
        fs::create_dir_all(w.p(d)).unwrap();
    }
    fs::copy(crate::guest::BUSYBOX, w.p("bin/sh")).unwrap();
    fs::write(w.p("usr/sbin/grubby"), FAKE_GRUBBY).unwrap();
    crate::support::run_ok(
        std::process::Command::new("chmod")
            .arg("755")
            .arg(w.p("usr/sbin/grubby")),
    );
    fs::write(w.p("default"), format!("/boot/vmlinuz-{k1}\n")).unwrap();
    for k in ks.iter() {
        fs::write(w.p(&format!("boot/vmlinuz-{k}")), "").unwrap();
        fs::write(
            w.p(&format!("boot/loader/entries/abc-{k}.conf")),
            format!("version {k}\n"),
        )
        .unwrap();
    }
    let log = || fs::read_to_string(w.p("grubby.log")).unwrap_or_default();

    let o = w.ok(&["install", "hello/1.0", "-k", k0]);
    assert!(
        o.stderr.contains(&format!("GRUB (grubby) keeps booting {k0}")),
        "{}",
        o.show()
    );
    assert_eq!(log(), format!("--set-default=/boot/vmlinuz-{k0}\n"));
    w.ok(&["install", "hello/1.0", "-k", k1]);
    assert_eq!(
        log(),
        format!("--set-default=/boot/vmlinuz-{k0}\n--default-kernel\n--set-default=/boot/vmlinuz-{k1}\n"),
        "lifting asks which kernel is the default, then sets the newest"
    );

    // UPDATEDEFAULT=no: the user keeps the default; grubby is not run
    fs::write(
        w.p("etc/sysconfig/kernel"),
        "UPDATEDEFAULT=no\nDEFAULTKERNEL=kernel-core\n",
    )
    .unwrap();
    fs::remove_file(w.p("grubby.log")).unwrap();
    let o = w.ok(&["uninstall", "hello/1.0", "-k", k1]);
    assert!(o.stderr.contains("UPDATEDEFAULT=no"), "{}", o.show());
    assert_eq!(log(), "");
}
