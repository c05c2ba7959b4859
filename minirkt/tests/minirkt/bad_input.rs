//! Bad input: one clear line, exit 254, nothing left mounted.

use std::fs;
use std::path::Path;

use minirkt::aci::{self, Compression};

use crate::support::{Stage1, World};

fn assert_fails(o: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(254), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

/// Writes a tar whose entries have exactly these (possibly hostile) names.
fn raw_aci(path: &Path, entries: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.finish().unwrap();
}

const GOOD_MANIFEST: &[u8] = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x","labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}],"app":{"exec":["/x"],"user":"0","group":"0"}}"#;

fn no_pods(w: &World) {
    for d in ["embryo", "prepare", "prepared", "run"] {
        let p = w.data.join("pods").join(d);
        let n = fs::read_dir(&p).map(|r| r.count()).unwrap_or(0);
        assert_eq!(n, 0, "{d}/ is not empty");
    }
}

#[test]
fn missing_image() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let o = w.minirkt(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        "/nonexistent/app.aci",
    ]);
    assert_fails(&o, "/nonexistent/app.aci");
    no_pods(&w);
    let o = w.minirkt(&["run", "--stage1-path=/nonexistent/s1.aci", "x.aci"]);
    assert_fails(&o, "error loading stage1 image");
    no_pods(&w);
}

#[test]
fn malformed_manifests() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let bad = w.root.join("bad.aci");
    raw_aci(&bad, &[("manifest", b"{not json"), ("rootfs/x", b"x")]);
    let o = w.minirkt(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        bad.to_str().unwrap(),
    ]);
    assert_fails(&o, "invalid image manifest");
    no_pods(&w);

    // An app image without os/arch labels is refused at prepare (stage0/run.go).
    let no_os = w.root.join("no-os.aci");
    raw_aci(
        &no_os,
        &[
            (
                "manifest",
                br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x","app":{"exec":["/x"],"user":"0","group":"0"}}"#,
            ),
            ("rootfs/x", b"x"),
        ],
    );
    let o = w.minirkt(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        no_os.to_str().unwrap(),
    ]);
    assert_fails(&o, "missing os label");
    assert!(w.mounts().is_empty());

    // image build validates too.
    let dir = w.root.join("badimg");
    fs::create_dir_all(dir.join("rootfs")).unwrap();
    fs::write(
        dir.join("manifest"),
        r#"{"acKind":"PodManifest","acVersion":"0.8.11","name":"x"}"#,
    )
    .unwrap();
    let o = w.minirkt(&[
        "image",
        "build",
        dir.to_str().unwrap(),
        "-o",
        "/tmp/never.aci",
    ]);
    assert_fails(&o, "acKind must be");
    fs::write(dir.join("manifest"), GOOD_MANIFEST).unwrap();
    fs::remove_dir(dir.join("rootfs")).unwrap();
    let o = w.minirkt(&[
        "image",
        "build",
        dir.to_str().unwrap(),
        "-o",
        "/tmp/never.aci",
    ]);
    assert_fails(&o, "rootfs");
    assert!(!Path::new("/tmp/never.aci").exists());
}

#[test]
fn hostile_entry_names_are_refused() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    for (name, why) in [
        ("rootfs/../../escape", "contains '..'"),
        ("/etc/evil", "absolute"),
        ("other/file", "outside manifest and rootfs"),
    ] {
        let aci = w.root.join("hostile.aci");
        raw_aci(
            &aci,
            &[
                ("manifest", GOOD_MANIFEST),
                ("rootfs/ok", b"x"),
                (name, b"x"),
            ],
        );
        let o = w.minirkt(&[
            "run",
            &format!("--stage1-path={}", s1.display()),
            aci.to_str().unwrap(),
        ]);
        assert_fails(&o, why);
    }
    assert!(!w.root.join("escape").exists());
    no_pods(&w);
}

#[test]
fn stage1_without_rkt_status_in_overlay_mode() {
    let w = World::new();
    let s1 = w.stage1(&Stage1 {
        with_status_dir: false,
        ..Stage1::default()
    });
    let app = w.app("hello", "echo hello");
    let o = w.minirkt(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    assert_fails(&o, "error touching status dir");
    assert!(w.mounts().is_empty(), "left mounted: {:?}", w.mounts());
    assert!(!w.out.join("run.argv").exists(), "stage1 must not have run");
    // The pod is in run/, unlocked: exited, and gc removes it.
    let run_dir = w.data.join("pods/run");
    let uuid = fs::read_dir(&run_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let uuid = uuid.to_string_lossy();
    assert_eq!(w.status(&uuid).state, "exited");
    w.ok(&["gc", "--grace-period=0s"]);
    assert!(fs::read_dir(&run_dir).unwrap().next().is_none());
    assert!(w.mounts().is_empty());

    // Without overlay the missing directory is not stage0's concern (rkt only touches it
    // in overlay mode).
    w.ok(&[
        "run",
        "--no-overlay",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
}

#[test]
fn bad_flags_and_unknown_pods() {
    let w = World::new();
    assert_fails(&w.minirkt(&["run", "--bogus", "x.aci"]), "unknown flag");
    assert_fails(&w.minirkt(&["run"]), "must provide at least one image");
    assert_fails(
        &w.minirkt(&["run", "--exec=/x", "a.aci"]),
        "--exec must follow an image",
    );
    assert_fails(
        &w.minirkt(&["run", "--volume=v,kind=host,source=rel", "a.aci"]),
        "absolute",
    );
    assert_fails(
        &w.minirkt(&["prepare", "--net=none", "a.aci"]),
        "unknown flag",
    );
    assert_fails(
        &w.minirkt(&["--insecure-options=nope", "list"]),
        "unknown insecure option",
    );
    assert_fails(&w.minirkt(&["status"]), "");
    assert_fails(&w.minirkt(&["nonsense"]), "");
    assert_fails(&w.minirkt(&["status", "0000"]), "no matches found");
    assert_fails(&w.minirkt(&["stop", "0000"]), "cannot get pod");
    assert_fails(&w.minirkt(&["rm", "0000"]), "cannot get pod");
    assert_fails(&w.minirkt(&["enter", "0000"]), "problem retrieving pod");
    assert_fails(
        &w.minirkt(&["gc", "--grace-period=soon"]),
        "invalid argument",
    );
}

#[test]
fn image_build_writes_a_valid_aci() {
    let w = World::new();
    let dir = w.root.join("img");
    fs::create_dir_all(dir.join("rootfs/dir")).unwrap();
    fs::write(dir.join("rootfs/dir/file"), "content").unwrap();
    fs::write(dir.join("manifest"), GOOD_MANIFEST).unwrap();
    let out = w.root.join("img.aci");
    let printed = w.ok(&[
        "image",
        "build",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(printed.trim(), out.to_str().unwrap());
    // gzip by default, entries manifest + rootfs/…
    let raw = fs::read(&out).unwrap();
    assert_eq!(&raw[..2], &[0x1f, 0x8b]);
    let a = aci::Aci::open(&out).unwrap();
    assert_eq!(a.manifest_bytes().unwrap(), GOOD_MANIFEST);
    let mut names: Vec<String> = tar::Archive::new(a.tar_bytes())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["manifest", "rootfs", "rootfs/dir", "rootfs/dir/file"]
    );
    // Reproducible.
    let again = w.root.join("again.aci");
    aci::build(&dir, &again, Compression::None).unwrap();
    let b = aci::Aci::open(&again).unwrap();
    assert_eq!(a.tar_bytes(), b.tar_bytes());
}

/// Rewrites the stub stage1's manifest annotations with `edit` and rebuilds the ACI.
fn stage1_with(w: &World, edit: impl Fn(&mut Vec<serde_json::Value>)) -> std::path::PathBuf {
    let s1 = w.stage1(&Stage1::default());
    let dir = w.root.join("stage1-v6-status");
    let mut m: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest")).unwrap()).unwrap();
    let mut anns = m["annotations"].as_array().unwrap().clone();
    edit(&mut anns);
    m["annotations"] = serde_json::Value::Array(anns);
    fs::write(dir.join("manifest"), m.to_string()).unwrap();
    aci::build(&dir, &s1, Compression::Gzip).unwrap();
    s1
}

#[test]
fn broken_stage1_entrypoints() {
    let w = World::new();
    let app = w.app("hello", "echo hello");
    type Edit = Box<dyn Fn(&mut Vec<serde_json::Value>)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|a| a.retain(|x| x["name"] != "coreos.com/rkt/stage1/run")),
            "error determining 'run' entrypoint",
        ),
        (
            Box::new(|a| {
                for x in a.iter_mut() {
                    if x["name"] == "coreos.com/rkt/stage1/run" {
                        x["value"] = "/stub/missing".into();
                    }
                }
            }),
            "error execing init",
        ),
        (
            Box::new(|a| {
                for x in a.iter_mut() {
                    if x["name"] == "coreos.com/rkt/stage1/interface-version" {
                        x["value"] = "six".into();
                    }
                }
            }),
            "error parsing interface version",
        ),
    ];
    for (edit, needle) in cases {
        let s1 = stage1_with(&w, edit);
        for overlay in [true, false] {
            let s1_arg = format!("--stage1-path={}", s1.display());
            let mut args = vec!["run", s1_arg.as_str(), app.to_str().unwrap()];
            if !overlay {
                args.insert(1, "--no-overlay");
            }
            assert_fails(&w.minirkt(&args), needle);
            assert!(w.mounts().is_empty(), "left mounted: {:?}", w.mounts());
            assert!(!w.out.join("run.argv").exists());
        }
    }
    // Every failed pod is an exited pod in run/; gc removes them all.
    w.ok(&["gc", "--grace-period=0s"]);
    assert_eq!(fs::read_dir(w.data.join("pods/run")).unwrap().count(), 0);
}
