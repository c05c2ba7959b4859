//! What the stage1 `run` entrypoint receives (contract §2.1).

use std::fs;

use crate::support::{Stage1, World};

fn run_flags(w: &World, version: Option<&'static str>) -> (Vec<String>, String, String) {
    let s1 = w.stage1(&Stage1 {
        version,
        ..Stage1::default()
    });
    let app = w.app("hello", "echo hello");
    let o = w
        .cmd(&[
            "--debug",
            "--local-config",
            "/srv/rkt-config",
            "run",
            &format!("--stage1-path={}", s1.display()),
            "--net=none",
            "--interactive",
            "--hostname=pod-host",
            "--insecure-options=all-run",
            "--ipc=private",
            app.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let uuid = w.last_uuid();
    (
        w.stub_lines("run.argv"),
        uuid,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn expected(w: &World, uuid: &str, middle: &[&str]) -> Vec<String> {
    let ep = w.pod_dir("run", uuid).join("stage1/rootfs/stub/run");
    let mut v = vec![ep.to_string_lossy().into_owned()];
    v.extend(middle.iter().map(|s| s.to_string()));
    v.push(uuid.to_string());
    v
}

#[test]
fn interface_version_1_gets_only_the_v1_flags() {
    for version in [None, Some("1")] {
        let w = World::new();
        let (argv, uuid, stderr) = run_flags(&w, version);
        assert_eq!(
            argv,
            expected(
                &w,
                &uuid,
                &[
                    "--debug",
                    "--net=none",
                    "--interactive",
                    "--local-config=/srv/rkt-config"
                ]
            ),
            "version {version:?}"
        );
        assert!(stderr.contains("warning: --hostname option is not supported by stage1"));
        assert!(stderr.contains("warning: --ipc option is not supported by stage1"));
    }
}

#[test]
fn interface_version_4_adds_hostname_and_insecure_flags() {
    let w = World::new();
    let (argv, uuid, stderr) = run_flags(&w, Some("4"));
    assert_eq!(
        argv,
        expected(
            &w,
            &uuid,
            &[
                "--debug",
                "--net=none",
                "--interactive",
                "--local-config=/srv/rkt-config",
                "--hostname=pod-host",
                "--disable-capabilities-restriction",
                "--disable-paths",
                "--disable-seccomp",
            ]
        )
    );
    assert!(!stderr.contains("--hostname option is not supported"));
    assert!(stderr.contains("warning: --ipc option is not supported by stage1"));
}

#[test]
fn interface_version_6_adds_ipc() {
    let w = World::new();
    let (argv, uuid, stderr) = run_flags(&w, Some("6"));
    assert_eq!(
        argv,
        expected(
            &w,
            &uuid,
            &[
                "--debug",
                "--net=none",
                "--interactive",
                "--local-config=/srv/rkt-config",
                "--hostname=pod-host",
                "--disable-capabilities-restriction",
                "--disable-paths",
                "--disable-seccomp",
                "--ipc=private",
            ]
        )
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn defaults_net_default_and_local_config_etc_rkt() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    w.ok(&[
        "run",
        "--stage1-path",
        s1.to_str().unwrap(),
        app.to_str().unwrap(),
    ]);
    let uuid = w.last_uuid();
    assert_eq!(
        w.stub_lines("run.argv"),
        expected(&w, &uuid, &["--net=default", "--local-config=/etc/rkt"])
    );
}

#[test]
fn exec_keeps_pid_cwd_environment_lock_and_exit_code() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let mut child = w
        .cmd(&[
            "run",
            &format!("--stage1-path={}", s1.display()),
            app.to_str().unwrap(),
        ])
        .env("MINIRKT_TEST_MARKER", "passed through")
        .env("STUB_EXIT", "7")
        .spawn()
        .unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    // The stage1 exit status is run's exit status (contract fact 2).
    assert_eq!(status.code(), Some(7));
    let uuid = w.last_uuid();
    let pod = w.pod_dir("run", &uuid);
    // Same PID: run is exec'd, not spawned.
    assert_eq!(
        fs::read_to_string(pod.join("pid")).unwrap().trim(),
        pid.to_string()
    );
    // cwd = $pod (in run/).
    assert_eq!(w.stub_lines("run.cwd"), [pod.to_string_lossy()]);
    // The whole environment plus the three RKT_* variables.
    let env = w.stub_lines("run.env");
    assert!(env.contains(&"MINIRKT_TEST_MARKER=passed through".to_string()));
    assert!(env.contains(&"RKT_SELINUX_CONTEXT=".to_string()));
    assert!(env.contains(&"RKT_SELINUX_MOUNT_CONTEXT=".to_string()));
    assert!(env.iter().any(|l| l.starts_with("RKT_LOCK_FD=")), "{env:?}");
    // The stub checked the fd: O_RDONLY|O_DIRECTORY on the pod dir, exclusively locked.
    assert_eq!(w.stub_lines("run.lock"), ["ok"]);
}
