//! Pod directory layouts in overlay and copy (`--no-overlay`) modes (contract §3.2) and
//! that gc leaves nothing mounted.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::support::{wait_child, Stage1, World};

const LONG: Duration = Duration::from_secs(20);

fn assert_app_tree_kept(rootfs: &Path) {
    // Modes (setuid), ownership and symlinks survive ACI build + render.
    let suid = fs::metadata(rootfs.join("bin/suid-file")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (1234, 5678));
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    // contract §2.1 step 3: /etc exists without mtab → mtab -> ../proc/self/mounts.
    assert_eq!(
        fs::read_link(rootfs.join("etc/mtab")).unwrap(),
        Path::new("../proc/self/mounts")
    );
}

#[test]
fn overlay_layout_mounts_and_cleanup() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let (mut child, uuid) = w.start_waiting(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    let pod = w.pod_dir("run", &uuid);
    let s1_rootfs = pod.join("stage1/rootfs");
    let app_dir = s1_rootfs.join("opt/stage2/hello");
    let s1_id = fs::read_to_string(pod.join("stage1TreeStoreID")).unwrap();
    let app_id = fs::read_to_string(pod.join("appsinfo/hello/treeStoreID")).unwrap();
    assert!(s1_id.starts_with("deps-sha512-") && app_id.starts_with("deps-sha512-"));

    // Overlays of the tree store at $s1 and at the app rootfs, in minirkt's namespace.
    let mounts = w.mounts();
    assert!(mounts.contains(&s1_rootfs), "{mounts:?}");
    assert!(mounts.contains(&app_dir.join("rootfs")), "{mounts:?}");
    for m in minirkt::mountinfo::mounts_under(&pod).unwrap() {
        assert_eq!(m.fs_type, "overlay");
    }
    // Files stage0 writes (contract §3.2).
    for f in [
        "pod",
        "pod.lck",
        "pod-created",
        "overlay-prepared",
        "stage1/manifest",
        "appsinfo/hello/manifest",
    ] {
        assert!(pod.join(f).is_file(), "{f}");
    }
    // stage1/manifest is the manifest as rkt's store keeps it: re-marshalled in appc's
    // field order (store/imagestore WriteACI), not the ACI's bytes.
    let image_id = fs::read_to_string(w.data.join("cas/tree").join(&s1_id).join("image")).unwrap();
    let s1_manifest = fs::read(pod.join("stage1/manifest")).unwrap();
    assert_eq!(
        s1_manifest,
        fs::read(w.data.join("cas/imageManifest").join(&image_id)).unwrap()
    );
    assert!(s1_manifest.starts_with(br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/stub-stage1","labels":"#));
    assert_eq!(
        fs::read(app_dir.join("manifest")).unwrap(),
        fs::read(pod.join("appsinfo/hello/manifest")).unwrap()
    );
    let ovl = pod.join("overlay");
    assert_eq!(fs::metadata(&ovl).unwrap().mode() & 0o7777, 0o750);
    for d in [
        ovl.join(&s1_id).join("upper"),
        ovl.join(&s1_id).join("work"),
        ovl.join(&app_id).join("upper/hello"),
        ovl.join(&app_id).join("work/hello"),
    ] {
        assert!(d.is_dir(), "{}", d.display());
    }
    // The touched status dir and the copied app manifest live in the stage1 upper dir.
    assert!(ovl.join(&s1_id).join("upper/rkt/status").is_dir());
    assert!(ovl
        .join(&s1_id)
        .join("upper/opt/stage2/hello/manifest")
        .is_file());
    assert_app_tree_kept(&app_dir.join("rootfs"));
    // The mtab link went into the app's upper dir, not into the tree store.
    assert!(ovl
        .join(&app_id)
        .join("upper/hello/etc/mtab")
        .symlink_metadata()
        .is_ok());
    assert!(w
        .data
        .join("cas/tree")
        .join(&app_id)
        .join("rootfs/etc/mtab")
        .symlink_metadata()
        .is_err());
    // The pod manifest rkt would write.
    let pm: serde_json::Value =
        serde_json::from_slice(&fs::read(pod.join("pod")).unwrap()).unwrap();
    assert_eq!(pm["acKind"], "PodManifest");
    assert_eq!(pm["acVersion"], "1.30.0");
    assert_eq!(pm["apps"][0]["name"], "hello");
    assert_eq!(pm["apps"][0]["image"]["name"], "example.com/hello");
    assert!(pm["apps"][0]["image"]["id"]
        .as_str()
        .unwrap()
        .starts_with("sha512-"));
    assert_eq!(pm["volumes"], serde_json::Value::Null);
    assert_eq!(
        pm["annotations"][0],
        serde_json::json!({"name": "coreos.com/rkt/stage1/mutable", "value": "false"})
    );

    w.ok(&["stop", &uuid]);
    assert!(wait_child(&mut child, LONG).success());
    // Mounts persist after exit (contract §3.2) and go with gc.
    assert!(!w.mounts().is_empty());
    w.ok(&["gc", "--grace-period=0s"]);
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    assert!(!w.pod_dir("exited-garbage", &uuid).exists());
    // The tree store is kept for the next pod.
    assert!(w
        .data
        .join("cas/tree")
        .join(&s1_id)
        .join("rendered")
        .exists());
}

#[test]
fn no_overlay_layout_is_full_copies() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    w.ok(&[
        "run",
        "--no-overlay",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    let uuid = w.last_uuid();
    let pod = w.pod_dir("run", &uuid);
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    assert!(!pod.join("overlay-prepared").exists());
    assert!(!pod.join("overlay").exists());
    assert!(!pod.join("appsinfo/hello/treeStoreID").exists());
    let s1_rootfs = pod.join("stage1/rootfs");
    assert!(s1_rootfs.join("stub/run").is_file());
    assert_eq!(
        fs::metadata(s1_rootfs.join("stub/run")).unwrap().mode() & 0o777,
        0o755
    );
    let app_dir = s1_rootfs.join("opt/stage2/hello");
    assert!(app_dir.join("manifest").is_file());
    assert_app_tree_kept(&app_dir.join("rootfs"));
    // Status comes from stage1/rootfs when not overlaid.
    fs::write(s1_rootfs.join("rkt/status/hello"), "42\n").unwrap();
    assert_eq!(w.status(&uuid).apps.get("hello"), Some(&42));
    w.ok(&["rm", &uuid]);
    assert!(!pod.exists());
    assert!(!w.pod_dir("exited-garbage", &uuid).exists());
}

#[test]
fn volumes_mounts_env_exec_and_args_reach_the_pod_manifest() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let other = w.app("other", "true");
    w.ok(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        "--volume",
        "data,kind=host,source=/srv/data,readOnly=true",
        "--volume=scratch,kind=empty",
        "--mount=volume=scratch,target=/scratch",
        "--set-env=GLOBAL=1",
        app.to_str().unwrap(),
        "--exec=/bin/echo",
        "--environment=LOCAL=2",
        "--mount",
        "volume=data,target=/data",
        "--",
        "a b",
        "--c",
        "---",
        other.to_str().unwrap(),
        "--name=second",
    ]);
    let uuid = w.last_uuid();
    let pod = w.pod_dir("run", &uuid);
    let pm: serde_json::Value =
        serde_json::from_slice(&fs::read(pod.join("pod")).unwrap()).unwrap();
    let a0 = &pm["apps"][0];
    assert_eq!(
        a0["app"]["exec"],
        serde_json::json!(["/bin/echo", "a b", "--c"])
    );
    assert_eq!(
        a0["app"]["environment"],
        serde_json::json!([{"name": "LOCAL", "value": "2"}, {"name": "GLOBAL", "value": "1"}])
    );
    assert_eq!(
        a0["mounts"],
        serde_json::json!([
            {"volume": "data", "path": "/data"},
            {"volume": "scratch", "path": "/scratch"}
        ])
    );
    let a1 = &pm["apps"][1];
    assert_eq!(a1["name"], "second");
    assert_eq!(
        a1["app"]["exec"],
        serde_json::json!(["/bin/sh", "-c", "true"])
    );
    assert_eq!(
        pm["volumes"],
        serde_json::json!([
            {"name": "data", "kind": "host", "source": "/srv/data", "readOnly": true},
            {"name": "scratch", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}
        ])
    );
    // Both apps rendered and overlaid.
    for a in ["hello", "second"] {
        assert!(pod
            .join("stage1/rootfs/opt/stage2")
            .join(a)
            .join("rootfs/bin/busybox")
            .exists());
    }
    w.ok(&["rm", &uuid]);
    assert!(w.mounts().is_empty());
}
