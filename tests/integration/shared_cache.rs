//! One build cache shared by two build hosts. Each host is a [`World`] (its
//! own dkms tree, module tree and config) run in its own mount namespace
//! where the world is bound at one common path, as real hosts all have
//! /var/lib/dkms and /lib/modules/K/build: the build commands, and so the
//! cache keys, are the same on both. Both config.toml files name the same
//! `cache_dir` and the same MOK key. The hosts install the hello fixture and
//! two one-file modules for both test kernels at the same time, then remove
//! and add them so the next round reuses the cache; some rounds start from
//! an empty cache so both hosts compile and race to store each key. After
//! every round, every entry is checked here against its manifest (parsed
//! independently of modsync), the installed modules must be byte-identical
//! to a cache-less build's, and no temporary may be left behind. A last
//! round prunes under the readers' feet (`cache_max_mb = 0`).

use crate::support::{modinfo, require_root, run, test_kernels, Out, World, CACHE};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MODULES: [&str; 3] = ["hello", "shca", "shcb"];
const ROUNDS: usize = 20;
/// Rounds that start from an empty cache (both hosts compile and store).
const COLD_ROUNDS: [usize; 2] = [0, 10];

/// A build host: a world seen at `mount` inside its own mount namespace.
struct Host {
    world: World,
    mount: PathBuf,
    name: &'static str,
}

impl Host {
    fn new(name: &'static str, ks: &[String], shared: &Path, extra_conf: &str) -> Host {
        let h = Host {
            world: World::new(ks),
            mount: shared.join("host"),
            name,
        };
        h.configure(shared, extra_conf);
        let src = h.world.p("src");
        run_ok_quiet(
            Command::new("cp")
                .arg("-a")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0"))
                .arg(&src),
        );
        for m in &MODULES[1..] {
            let dir = src.join(format!("{m}-1.0"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("dkms.conf"),
                format!(
                    "PACKAGE_NAME={m}\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]={m}\n\
                     DEST_MODULE_LOCATION[0]=/updates\nAUTOINSTALL=yes\n"
                ),
            )
            .unwrap();
            std::fs::write(dir.join("Makefile"), format!("obj-m := {m}.o\n")).unwrap();
            std::fs::write(
                dir.join(format!("{m}.c")),
                format!(
                    "#include <linux/module.h>\nstatic int __init {m}_init(void) {{ return 0; }}\n\
                     static void __exit {m}_exit(void) {{}}\nmodule_init({m}_init);\nmodule_exit({m}_exit);\n\
                     MODULE_LICENSE(\"GPL\");\n"
                ),
            )
            .unwrap();
        }
        for m in MODULES {
            h.ok(&["add", &format!("{m}/1.0")]);
        }
        h
    }

    /// The world's config.toml: the shared cache and MOK key, plus `extra`.
    fn configure(&self, shared: &Path, extra: &str) {
        std::fs::write(
            self.world.p("etc/modsync/config.toml"),
            format!(
                "cache_dir = \"{}\"\nmok_signing_key = \"{}\"\nmok_certificate = \"{}\"\nupdate_initramfs = false\n{extra}\n",
                shared.join("cache").display(),
                shared.join("mok.key").display(),
                shared.join("mok.pub").display()
            ),
        )
        .unwrap();
    }

    /// `modsync ARGS` on this host: in a mount namespace of its own, with the world bound at `mount`.
    fn modsync(&self, args: &[&str]) -> Out {
        let m = &self.mount;
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
            .arg(r#"mount --bind "$1" "$2"; shift 2; exec "$@""#)
            .arg("sh")
            .arg(self.world.root())
            .arg(m)
            .arg(env!("CARGO_BIN_EXE_modsync"))
            .args(args)
            .arg("--dkmstree")
            .arg(m.join("dkms"))
            .arg("--sourcetree")
            .arg(m.join("src"))
            .arg("--installtree")
            .arg(m.join("lib/modules"))
            .env("MODSYNC_SYSCONF_ROOT", m)
            .env_remove("parallel_jobs");
        let mut o = run(&mut c);
        o.cmd = format!("[{}] modsync {}", self.name, args.join(" "));
        o
    }

    fn ok(&self, args: &[&str]) -> Out {
        let o = self.modsync(args);
        assert_eq!(o.code, 0, "{}", o.show());
        o
    }

    /// Installs every module for every kernel; the outputs.
    fn install_all(&self, force: bool) -> Vec<Out> {
        MODULES
            .iter()
            .map(|m| {
                let mv = format!("{m}/1.0");
                // depmod is not what is tested here, and it takes a second per kernel
                let mut args = vec!["install", mv.as_str(), "--no-depmod"];
                let ks = self.world.k_args();
                args.extend(ks.iter().map(String::as_str));
                if force {
                    args.push("--force");
                }
                self.modsync(&args)
            })
            .collect()
    }

    /// Removes and adds every module again, so the next install builds (or reuses).
    fn reset(&self) {
        for m in MODULES {
            self.ok(&["remove", &format!("{m}/1.0"), "--all", "--no-depmod"]);
            self.ok(&["add", &format!("{m}/1.0")]);
        }
    }

    /// The installed module files, by (kernel, module).
    fn installed(&self) -> BTreeMap<(String, String), Vec<u8>> {
        let mut out = BTreeMap::new();
        for k in &self.world.kernels {
            for m in MODULES {
                if let Some(f) = self.world.installed_ko(k, m) {
                    out.insert((k.clone(), m.to_string()), std::fs::read(f).unwrap());
                }
            }
        }
        out
    }

    /// Temporaries modsync left in the host's trees.
    fn temporaries(&self) -> Vec<PathBuf> {
        ["dkms", "lib/modules"]
            .iter()
            .flat_map(|d| walkdir::WalkDir::new(self.world.p(d)).into_iter().flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".modsync-tmp-"))
            .map(|e| e.path().to_path_buf())
            .collect()
    }
}

fn run_ok_quiet(c: &mut Command) {
    let o = run(c);
    assert_eq!(o.code, 0, "{}", o.show());
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// What is wrong with the cache entry at `entry`, checked against its
/// manifest by this test's own reading of the format: the header, the
/// closing checksum, and every listed directory, file (mode, size, hash)
/// and link present with nothing unlisted in `tree/`.
fn entry_problem(entry: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(entry.join("manifest")) {
        Ok(t) => t,
        Err(e) => return Some(format!("no manifest: {e}")),
    };
    let lines: Vec<&str> = text.lines().collect();
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return Some("an empty manifest".into());
    };
    if *first != "modsync-cache-manifest 1" {
        return Some(format!("manifest header {first:?}"));
    }
    let body_len = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let end: Vec<&str> = last.split('\t').collect();
    let items = &lines[1..lines.len() - 1];
    if end.len() != 3
        || end[0] != "end"
        || end[1] != items.len().to_string()
        || end[2] != sha256_hex(&text.as_bytes()[..body_len])
    {
        return Some(format!(
            "manifest end line {last:?} does not close {} items",
            items.len()
        ));
    }
    let tree = entry.join("tree");
    for line in items {
        let f: Vec<&str> = line.split('\t').collect();
        let ok = match f.as_slice() {
            ["d", p] => tree.join(p).is_dir(),
            ["f", mode, size, sha, p] => {
                let path = tree.join(p);
                let md = std::fs::symlink_metadata(&path);
                md.is_ok_and(|md| {
                    md.is_file()
                        && format!("{:o}", md.permissions().mode() & 0o7777) == *mode
                        && md.len().to_string() == *size
                        && std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == *sha)
                })
            }
            ["l", p, target] => std::fs::read_link(tree.join(p)).is_ok_and(|t| t == Path::new(target)),
            _ => false,
        };
        if !ok {
            return Some(format!("{line:?} does not match {}", tree.display()));
        }
    }
    let on_disk = walkdir::WalkDir::new(&tree).min_depth(1).into_iter().count();
    (on_disk != items.len()).then(|| format!("{} holds {on_disk} items, the manifest {}", tree.display(), items.len()))
}

/// Problems of the shared cache: entries that do not verify, names that
/// are not entries (temporaries, trash, leases left behind).
fn cache_problems(cache: &Path) -> (usize, Vec<String>) {
    let mut entries = 0;
    let mut problems = Vec::new();
    for e in std::fs::read_dir(cache).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            entries += 1;
            if let Some(p) = entry_problem(&e.path()) {
                problems.push(format!("entry {name}: {p}"));
            }
        } else {
            problems.push(format!("left behind in the cache: {name}"));
        }
    }
    (entries, problems)
}

/// What is wrong with a host after its installs `outs`: a failed command,
/// installed modules that differ from the cache-less build, temporaries.
fn host_problems(h: &Host, outs: &[Out], reference: &BTreeMap<(String, String), Vec<u8>>) -> Vec<String> {
    let mut problems: Vec<String> = outs.iter().filter(|o| o.code != 0).map(Out::show).collect();
    let installed = h.installed();
    if installed != *reference {
        let differ: Vec<_> = reference
            .iter()
            .filter(|(k, v)| installed.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        problems.push(format!(
            "[{}] installed modules differ from the cache-less build: {differ:?}",
            h.name
        ));
    }
    for t in h.temporaries() {
        problems.push(format!("[{}] temporary left behind: {}", h.name, t.display()));
    }
    problems
}

/// Everything wrong after a round in which `outs[i]` are host i's installs.
fn round_problems(
    hosts: &[Host],
    outs: &[Vec<Out>],
    reference: &BTreeMap<(String, String), Vec<u8>>,
    shared: &Path,
    want_entries: Option<usize>,
) -> Vec<String> {
    let mut problems: Vec<String> = hosts
        .iter()
        .zip(outs)
        .flat_map(|(h, outs)| host_problems(h, outs, reference))
        .collect();
    let (entries, p) = cache_problems(&shared.join("cache"));
    problems.extend(p);
    if let Some(want) = want_entries {
        if entries != want {
            problems.push(format!("the cache holds {entries} entries, not {want}"));
        }
    }
    problems
}

fn reused(outs: &[Out]) -> usize {
    outs.iter()
        .map(|o| o.text().matches("reused the cached build").count())
        .sum()
}

/// Runs every host's installs at the same time.
fn concurrently(hosts: &[Host], force: &[bool]) -> Vec<Vec<Out>> {
    std::thread::scope(|s| {
        let running: Vec<_> = hosts
            .iter()
            .zip(force)
            .map(|(h, &f)| s.spawn(move || h.install_all(f)))
            .collect();
        running.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

#[test]
fn two_hosts_share_one_build_cache() {
    require_root("shared build cache");
    let ks = test_kernels();
    let ks = &ks[..2];
    let base = Path::new(CACHE).join("tmp");
    std::fs::create_dir_all(&base).unwrap();
    let shared_dir = tempfile::Builder::new().prefix("shared.").tempdir_in(&base).unwrap();
    let shared = shared_dir.path();
    std::fs::create_dir_all(shared.join("host")).unwrap();
    std::fs::create_dir_all(shared.join("cache")).unwrap();
    let started = std::time::Instant::now();

    // the cache-less build every host's result must equal (it also makes the shared MOK key)
    let reference_host = Host::new("reference", ks, shared, "cache = false");
    for o in reference_host.install_all(false) {
        assert_eq!(o.code, 0, "{}", o.show());
    }
    let reference = reference_host.installed();
    assert_eq!(reference.len(), MODULES.len() * ks.len(), "{:?}", reference.keys());
    for (k, m) in reference.keys() {
        let f = reference_host.world.installed_ko(k, m).unwrap();
        let vermagic = modinfo("vermagic", &f);
        assert!(
            vermagic.starts_with(&format!("{k} ")),
            "{m} for {k}: vermagic {vermagic}"
        );
    }
    assert_eq!(
        cache_problems(&shared.join("cache")).0,
        0,
        "cache = false stored something"
    );
    drop(reference_host);

    let hosts = [Host::new("A", ks, shared, ""), Host::new("B", ks, shared, "")];
    let mut consistent = 0;
    let mut report = Vec::new();
    for round in 0..ROUNDS {
        let cold = COLD_ROUNDS.contains(&round);
        let round_started = std::time::Instant::now();
        if cold {
            hosts[0].ok(&["cache", "clear"]);
        }
        let outs = concurrently(&hosts, &[false, false]);
        let mut problems = round_problems(&hosts, &outs, &reference, shared, Some(reference.len()));
        let hits: Vec<usize> = outs.iter().map(|o| reused(o)).collect();
        if !cold && hits.iter().any(|&n| n != reference.len()) {
            problems.push(format!(
                "a warm round reused {hits:?} of {} builds per host",
                reference.len()
            ));
        }
        println!(
            "round {round:2} ({}): reused {hits:?}, {} problem(s), {:.1} s",
            if cold { "cold" } else { "warm" },
            problems.len(),
            round_started.elapsed().as_secs_f64()
        );
        if problems.is_empty() {
            consistent += 1;
        } else {
            report.push(format!("round {round}:\n{}", problems.join("\n")));
        }
        for h in &hosts {
            h.reset();
        }
    }
    println!("shared cache: {consistent}/{ROUNDS} rounds consistent");
    assert_eq!(consistent, ROUNDS, "{}", report.join("\n\n"));

    // pruning pressure: both hosts keep nothing; A rebuilds everything (storing and
    // pruning after each build) while B reinstalls from the cache again and again
    for h in &hosts {
        h.configure(shared, "cache_max_mb = 0");
    }
    let (mut cycles, mut hits, mut problems) = (0, 0, Vec::new());
    let a_outs = std::thread::scope(|s| {
        let a = s.spawn(|| hosts[0].install_all(true));
        while !a.is_finished() || cycles == 0 {
            let outs = hosts[1].install_all(false);
            cycles += 1;
            hits += reused(&outs);
            problems.extend(host_problems(&hosts[1], &outs, &reference));
            hosts[1].reset();
        }
        a.join().unwrap()
    });
    problems.extend(host_problems(&hosts[0], &a_outs, &reference));
    problems.extend(cache_problems(&shared.join("cache")).1);
    println!(
        "shared cache under pruning pressure: B reinstalled {cycles} times while A rebuilt and pruned, \
         {hits} of {} builds reused, {} problem(s); {:.0} s in all",
        cycles * reference.len(),
        problems.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
