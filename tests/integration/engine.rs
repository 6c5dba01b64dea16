//! The engine against real kernel headers and real Debian `*-dkms` sources,
//! in an isolated world (see [`crate::support::World`]): real drivers build
//! and install for two kernels at once, a driver that does not compile fails
//! the way dkms fails (exit 10, its make.log at `m/v/build/make.log`, status
//! still `added`), remove follows dkms, the build cache is reused, each
//! dkms.conf is evaluated once per kernel, and `status` starts no process.

use crate::support::{dkms_source, lines_about, modinfo, require_root, run, run_ok, test_kernels, version_of, World};
use std::path::Path;
use std::process::Command;

fn add_source(w: &World, prefix: &str) -> (String, String) {
    let src = dkms_source(prefix);
    let v = version_of(&src, prefix);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(w.p("src")));
    w.ok(&["add", &format!("{prefix}/{v}")]);
    (prefix.to_string(), v)
}

#[test]
fn real_drivers_install_for_two_kernels_and_a_broken_one_fails_like_dkms() {
    require_root("real drivers");
    let ks = test_kernels();
    let w = World::new(&ks);
    let (m, v) = add_source(&w, "v4l2loopback");
    let (d, dv) = add_source(&w, "ddcci");
    let (r, rv) = add_source(&w, "openrazer-driver");
    let kargs = w.k_args();
    let mut args = vec!["install", "v4l2loopback/x"];
    let mv = format!("{m}/{v}");
    args[1] = &mv;
    args.extend(kargs.iter().map(String::as_str));
    w.ok(&args);
    let dmv = format!("{d}/{dv}");
    let mut args: Vec<&str> = vec!["install", &dmv];
    args.extend(kargs.iter().map(String::as_str));
    w.ok(&args);
    for k in &ks {
        for name in ["v4l2loopback", "ddcci", "ddcci-backlight"] {
            let f = w
                .installed_ko(k, name)
                .unwrap_or_else(|| panic!("{name}.ko for {k} not installed:\n{}", w.status()));
            assert!(
                modinfo("vermagic", &f).starts_with(&format!("{k} ")),
                "{} is not built for {k}",
                f.display()
            );
            let dep = std::fs::read_to_string(w.modules_dir(k).join("modules.dep")).unwrap();
            assert!(
                dep.contains(&format!("updates/dkms/{name}.ko")),
                "modules.dep of {k} lacks {name}"
            );
        }
        assert!(w
            .status()
            .lines()
            .any(|l| l == format!("{m}/{v}, {k}, {}: installed", crate::support::ARCH)));
    }
    // a driver that does not build for these kernels: exit 10, dkms's make.log path, status still "added"
    let rmv = format!("{r}/{rv}");
    let o = w.modsync(&["install", &rmv, "-k", &ks[1]]);
    assert_eq!(o.code, 10, "{}", o.show());
    let log = w.p("dkms").join(&r).join(&rv).join("build/make.log");
    assert!(
        o.text().contains(&log.display().to_string()),
        "the message names {}:\n{}",
        log.display(),
        o.show()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.starts_with("DKMS (dkms-3.0.10) make.log for ") && text.contains("# exit code: 2"),
        "{text}"
    );
    assert_eq!(
        lines_about(&w.status(), &rmv),
        vec![format!("{rmv}: added")],
        "dkms's added line stays"
    );
    let json = w.status_json();
    assert!(
        json.iter().any(|l| l["state"] == "failed"
            && l["module"] == r.as_str()
            && l["make_log"].as_str().is_some_and(|p| Path::new(p).is_file())),
        "status --json reports the failure: {json:?}"
    );
    // remove of the last build deletes the version, as dkms does
    w.ok(&["remove", &rmv, "-k", &ks[1]]);
    assert!(lines_about(&w.status(), &rmv).is_empty() && !w.p("dkms").join(&r).exists());
    // remove --all takes every kernel and the registration
    w.ok(&["remove", &mv, "--all"]);
    assert!(lines_about(&w.status(), &mv).is_empty());
    for k in &ks {
        assert!(w.installed_ko(k, "v4l2loopback").is_none());
        assert!(!std::fs::read_to_string(w.modules_dir(k).join("modules.dep"))
            .unwrap()
            .contains("v4l2loopback"));
        assert!(w.installed_ko(k, "ddcci").is_some(), "the other module stays");
    }
}

/// A module that counts how often its dkms.conf is read (each read appends a line).
fn counting_module(w: &World, name: &str, depends: &str) {
    let dir = w.p("src").join(format!("{name}-1.0"));
    std::fs::create_dir_all(&dir).unwrap();
    let counter = w.p("reads");
    std::fs::write(
        dir.join("dkms.conf"),
        format!(
            "echo {name} >> {}\nPACKAGE_NAME={name}\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]={name}\nDEST_MODULE_LOCATION[0]=/updates\nAUTOINSTALL=yes\nBUILD_DEPENDS=\"{depends}\"\n",
            counter.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("Makefile"), format!("obj-m := {name}.o\n")).unwrap();
    std::fs::write(
        dir.join(format!("{name}.c")),
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    )
    .unwrap();
}

#[test]
fn autoinstall_reads_each_dkms_conf_once_and_status_starts_no_process() {
    require_root("one read per module and kernel");
    let ks = test_kernels();
    let w = World::new(&ks[..1]);
    counting_module(&w, "alpha", "");
    counting_module(&w, "beta", "alpha");
    counting_module(&w, "gamma", "");
    for n in ["alpha", "beta", "gamma"] {
        w.ok(&["add", &format!("{n}/1.0")]);
    }
    std::fs::remove_file(w.p("reads")).unwrap();
    let o = w.ok(&["autoinstall", "-k", &ks[0]]);
    let reads = std::fs::read_to_string(w.p("reads")).unwrap();
    let mut r: Vec<&str> = reads.lines().collect();
    r.sort();
    assert_eq!(
        r,
        vec!["alpha", "beta", "gamma"],
        "each dkms.conf once for the kernel:\n{}",
        o.show()
    );
    let status = w.status();
    for n in ["alpha", "beta", "gamma"] {
        assert!(
            status.contains(&format!("{n}/1.0, {}, {}: installed", ks[0], crate::support::ARCH)),
            "{status}"
        );
    }
    // status: no dkms.conf read, and no process at all (strace counts the execs)
    std::fs::remove_file(w.p("reads")).unwrap();
    let trace = w.p("trace");
    let mut c = w.cmd(&["status"]);
    let prog = c.get_program().to_owned();
    let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
    let mut s = Command::new("strace");
    s.arg("-f")
        .arg("-qq")
        .arg("-e")
        .arg("trace=execve")
        .arg("-o")
        .arg(&trace)
        .arg(prog)
        .args(args);
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    c = s;
    let o = run(&mut c);
    assert_eq!(o.code, 0, "{}", o.show());
    let execs = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("execve("))
        .count();
    assert_eq!(
        execs,
        1,
        "status ran a process besides itself:\n{}",
        std::fs::read_to_string(&trace).unwrap()
    );
    assert!(!w.p("reads").exists(), "status read a dkms.conf");
    // a second autoinstall has nothing to do and reads nothing
    w.ok(&["autoinstall", "-k", &ks[0]]);
    assert!(!w.p("reads").exists());
}

#[test]
fn a_reinstall_reuses_the_build_cache() {
    require_root("build cache");
    let ks = test_kernels();
    let w = World::new(&ks[..1]);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0"))
            .arg(w.p("src")),
    );
    w.ok(&["install", "hello/1.0", "-k", &ks[0]]);
    let first = std::fs::read(w.installed_ko(&ks[0], "hello").unwrap()).unwrap();
    w.ok(&["remove", "hello/1.0", "--all"]);
    w.ok(&["add", "hello/1.0"]);
    let o = w.ok(&["install", "hello/1.0", "-k", &ks[0]]);
    assert!(o.text().contains("reused the cached build"), "{}", o.show());
    assert_eq!(
        std::fs::read(w.installed_ko(&ks[0], "hello").unwrap()).unwrap(),
        first,
        "the same module"
    );
    // with the cache off, it is built again
    std::fs::write(
        w.p("etc/modsync/config.toml"),
        std::fs::read_to_string(w.p("etc/modsync/config.toml")).unwrap() + "cache = false\n",
    )
    .unwrap();
    w.ok(&["remove", "hello/1.0", "--all"]);
    w.ok(&["add", "hello/1.0"]);
    let o = w.ok(&["install", "hello/1.0", "-k", &ks[0]]);
    assert!(!o.text().contains("reused the cached build"), "{}", o.show());
}
