//! The pod lifecycle: running while the lock is held, exited after; stop, enter,
//! prepare/run-prepared, gc and rm (contract §2.2–§2.4, §3.1, §4).

use std::fs;
use std::time::Duration;

use crate::support::{wait_child, wait_for, Stage1, World};

const LONG: Duration = Duration::from_secs(20);

#[test]
fn running_while_locked_exited_after_graceful_stop() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let mut cmd = w.cmd(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    cmd.env("STUB_WAIT_FOR_STOP", "1")
        .env("STUB_APP_STATUS", "3");
    let mut child = cmd.spawn().unwrap();
    let uuid = wait_for(LONG, || {
        let cwd = fs::read_to_string(w.out.join("run.cwd")).ok()?;
        let uuid = cwd.trim().rsplit('/').next()?.to_string();
        w.pod_dir("run", &uuid).join("pid").exists().then_some(uuid)
    })
    .expect("pod never started");

    // Running: the stub holds the lock.
    let st = w.status(&uuid);
    assert_eq!(st.state, "running");
    assert_eq!(st.pid, Some(i64::from(child.id())));
    assert_eq!(st.exited, Some(false));
    assert!(st.started.is_some() && st.created.is_some());
    assert_eq!(st.networks.as_deref(), Some(""));
    assert!(st.apps.is_empty(), "{st:?}");
    let list = w.ok(&["list", "--no-legend"]);
    assert!(
        list.contains(&uuid[..8]) && list.contains("running"),
        "{list}"
    );
    assert!(list.contains("example.com/hello:1.0"), "{list}");

    // Graceful stop: the stop entrypoint gets `<uuid>`, cwd $pod; stop does not wait.
    let stop_out = w.ok(&["stop", &uuid]);
    assert_eq!(stop_out.trim(), format!("{uuid:?}"));
    let pod = w.pod_dir("run", &uuid);
    let ep = pod.join("stage1/rootfs/stub/stop");
    assert_eq!(
        w.stub_lines("stop.argv"),
        [ep.to_string_lossy().into_owned(), uuid.clone()]
    );
    assert_eq!(w.stub_lines("stop.cwd"), [pod.to_string_lossy()]);
    assert!(wait_child(&mut child, LONG).success());

    // Exited: the app status comes from the overlay upper dir (contract fact 5).
    assert_eq!(w.status(&uuid).state, "exited");
    assert_eq!(w.status(&uuid).exited, Some(true));
    assert_eq!(w.status(&uuid).apps.get("hello"), Some(&3));
    let s1_id = fs::read_to_string(pod.join("stage1TreeStoreID")).unwrap();
    let upper = pod
        .join("overlay")
        .join(&s1_id)
        .join("upper/rkt/status/hello");
    assert_eq!(fs::read_to_string(upper).unwrap().trim(), "3");
    let tree_status = w
        .data
        .join("cas/tree")
        .join(&s1_id)
        .join("rootfs/rkt/status/hello");
    assert!(!tree_status.exists(), "the tree store must stay untouched");
    // `stop` of an exited pod is not an error.
    let again = w.ok(&["stop", &uuid]);
    assert!(again.contains("is already stopped"), "{again}");
}

#[test]
fn forced_stop_kills_and_the_pod_exits() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let (mut child, uuid) = w.start_waiting(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    w.ok(&["stop", "--force", &uuid]);
    let ep = w.pod_dir("run", &uuid).join("stage1/rootfs/stub/stop");
    assert_eq!(
        w.stub_lines("stop.argv"),
        [
            ep.to_string_lossy().into_owned(),
            "--force".into(),
            uuid.clone()
        ]
    );
    let status = wait_child(&mut child, LONG);
    assert!(!status.success());
    // Exited once every holder of the lock (the stub's short-lived children too) is gone.
    let exited = wait_for(LONG, || (w.status(&uuid).state == "exited").then_some(()));
    assert!(exited.is_some(), "pod never became exited");
    // Killed before writing statuses: no app line.
    assert!(w.status(&uuid).apps.is_empty());
}

#[test]
fn enter_execs_the_tree_store_copy_with_pid_and_appname() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let (mut child, uuid) = w.start_waiting(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    let o = w
        .cmd(&["enter", "--app=hello", &uuid, "/bin/echo", "hi", "--there"])
        .env("STUB_ENTER_EXIT", "5")
        .output()
        .unwrap();
    // enter is exec'd: its exit status is the entrypoint's.
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pod = w.pod_dir("run", &uuid);
    let s1_id = fs::read_to_string(pod.join("stage1TreeStoreID")).unwrap();
    let ep = w
        .data
        .join("cas/tree")
        .join(&s1_id)
        .join("rootfs/stub/enter");
    assert_eq!(
        w.stub_lines("enter.argv"),
        [
            ep.to_string_lossy().into_owned(),
            format!("--pid={}", child.id()),
            "--appname=hello".into(),
            "--".into(),
            "/bin/echo".into(),
            "hi".into(),
            "--there".into(),
        ]
    );
    assert_eq!(w.stub_lines("enter.cwd"), [pod.to_string_lossy()]);
    // Without --app, the only app; without a command, /bin/bash.
    let o = w.minirkt(&["enter", &uuid]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no command specified, assuming \"/bin/bash\"")
    );
    assert_eq!(
        w.stub_lines("enter.argv")[2..],
        ["--appname=hello", "--", "/bin/bash"]
    );

    w.ok(&["stop", &uuid]);
    wait_child(&mut child, LONG);
    // Only running pods can be entered.
    let o = w.minirkt(&["enter", &uuid, "/bin/true"]);
    assert_eq!(o.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&o.stderr).contains("isn't currently running"));
}

#[test]
fn prepare_then_run_prepared() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let uuid = w
        .ok(&[
            "prepare",
            &format!("--stage1-path={}", s1.display()),
            app.to_str().unwrap(),
        ])
        .trim()
        .to_string();
    assert_eq!(uuid.len(), 36, "prepare prints the UUID: {uuid:?}");
    assert!(w.pod_dir("prepared", &uuid).join("pod").exists());
    assert_eq!(w.status(&uuid).state, "prepared");
    // Nothing is mounted before run (contract §2.1 step 2 happens at run).
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());

    // run-prepared by unambiguous prefix; it never passes --local-config (contract §2.1).
    w.ok(&["run-prepared", "--net=none", "--hostname=h1", &uuid[..8]]);
    let pod = w.pod_dir("run", &uuid);
    assert_eq!(
        w.stub_lines("run.argv"),
        [
            pod.join("stage1/rootfs/stub/run")
                .to_string_lossy()
                .into_owned(),
            "--net=none".into(),
            "--hostname=h1".into(),
            uuid.clone(),
        ]
    );
    assert_eq!(w.stub_lines("run.lock"), ["ok"]);
    assert_eq!(w.status(&uuid).state, "exited");
    // A pod runs once.
    let o = w.minirkt(&["run-prepared", &uuid]);
    assert_eq!(o.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not prepared"));
}

#[test]
fn gc_marks_then_sweeps_after_the_grace_period_and_is_idempotent() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    w.ok(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    let uuid = w.last_uuid();
    assert!(
        !w.mounts().is_empty(),
        "overlays stay mounted until gc (contract §3.2)"
    );

    // Default grace period: marked (moved to exited-garbage), not deleted.
    let o = w.minirkt(&["gc"]);
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("moving pod {uuid:?} to garbage")),
        "{stderr}"
    );
    assert!(
        stderr.contains("still within grace period (30m0s)"),
        "{stderr}"
    );
    assert!(w.pod_dir("exited-garbage", &uuid).exists());
    assert_eq!(w.status(&uuid).state, "exited garbage");
    assert_eq!(w.status(&uuid).apps.get("hello"), Some(&0));
    assert!(
        !w.out.join("gc.log").exists(),
        "no stage1 gc before the sweep"
    );

    // Grace period 0: swept. The gc entrypoint ran once, in exited-garbage, with the
    // interface-6 argv, and saw $s1.
    let out = w.ok(&["gc", "--grace-period=0s"]);
    assert!(
        out.contains(&format!("Garbage collecting pod {uuid:?}")),
        "{out}"
    );
    assert!(!out.contains("discarded"), "gc's stdout must be discarded");
    let log = w.stub_lines("gc.log");
    let pod = w.pod_dir("exited-garbage", &uuid);
    assert_eq!(
        log,
        [
            pod.join("stage1/rootfs/stub/gc")
                .to_string_lossy()
                .into_owned(),
            "--local-config".into(),
            "/etc/rkt".into(),
            uuid.clone(),
            format!("cwd={}", pod.display()),
            "s1=yes".into(),
            "--".into(),
        ]
    );
    assert!(!pod.exists());
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());

    // Twice: nothing left to do, no second stage1 gc call.
    w.ok(&["gc", "--grace-period=0s"]);
    assert_eq!(w.stub_lines("gc.log").len(), log.len());
    let o = w.minirkt(&["status", &uuid]);
    assert_eq!(o.status.code(), Some(254));
}

#[test]
fn gc_without_local_config_below_version_5_and_failing_gc_still_deletes() {
    let w = World::new();
    let s1 = w.stage1(&Stage1 {
        version: Some("4"),
        ..Stage1::default()
    });
    let app = w.app("hello", "echo hello");
    w.ok(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    let uuid = w.last_uuid();
    let o = w
        .cmd(&["--debug", "gc", "--grace-period=0s"])
        .env("STUB_GC_EXIT", "3")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("problem performing stage1 GC"));
    let log = w.stub_lines("gc.log");
    assert_eq!(log[1..3], ["--debug".to_string(), uuid.clone()]);
    assert!(!w.pod_dir("exited-garbage", &uuid).exists());
    assert!(w.mounts().is_empty());
}

#[test]
fn rm_removes_exited_and_prepared_pods_but_not_running_ones() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let s1_arg = format!("--stage1-path={}", s1.display());

    // Prepared: removed without a stage1 gc (it never ran).
    let prepared = w
        .ok(&["prepare", &s1_arg, app.to_str().unwrap()])
        .trim()
        .to_string();
    let out = w.ok(&["rm", &prepared]);
    assert_eq!(out.trim(), format!("{prepared:?}"));
    assert!(!w.pod_dir("prepared", &prepared).exists());
    assert!(!w.pod_dir("garbage", &prepared).exists());
    assert!(!w.out.join("gc.log").exists());

    // Running: refused.
    let (mut child, running) = w.start_waiting(&["run", &s1_arg, app.to_str().unwrap()]);
    let o = w.minirkt(&["rm", &running]);
    assert_eq!(o.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is currently running"));
    w.ok(&["stop", &running]);
    wait_child(&mut child, LONG);

    // Exited: stage1 gc, unmount, delete — at once.
    w.ok(&["rm", &running]);
    assert_eq!(
        w.stub_lines("gc.log").last().map(String::as_str),
        Some("--")
    );
    assert!(!w.pod_dir("run", &running).exists());
    assert!(!w.pod_dir("exited-garbage", &running).exists());
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
}

#[test]
fn net_info_is_read_like_rkt() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    w.ok(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    let uuid = w.last_uuid();
    let ni = w.pod_dir("run", &uuid).join("net-info.json");
    fs::write(
        &ni,
        r#"[{"netName":"default","netConf":"/etc/rkt/net.d/99-default.conf","pluginPath":"/p","ifName":"tap0","ip":"172.16.28.2","args":"","mask":"255.255.255.0"}]"#,
    )
    .unwrap();
    assert_eq!(
        w.status(&uuid).networks.as_deref(),
        Some("default:ip4=172.16.28.2")
    );
    assert!(w.ok(&["list"]).contains("default:ip4=172.16.28.2"));
    // A present but invalid file makes the pod unreadable (contract fact 12).
    fs::write(&ni, "").unwrap();
    let o = w.minirkt(&["status", &uuid]);
    assert_eq!(o.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&o.stderr).contains("netinfo"));
    fs::remove_file(&ni).unwrap();
    w.ok(&["rm", &uuid]);
}

#[test]
fn enter_waits_for_the_pid_file() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let (mut child, uuid) = w.start_with(
        &[
            "run",
            &format!("--stage1-path={}", s1.display()),
            app.to_str().unwrap(),
        ],
        &[("STUB_WAIT_FOR_STOP", "1"), ("STUB_PID_DELAY", "1.5")],
    );
    let pod = w.pod_dir("run", &uuid);
    assert!(
        !pod.join("pid").exists(),
        "the stub wrote pid too early for this test"
    );
    assert_eq!(
        w.status(&uuid).pid,
        None,
        "no pid= line before the pid file exists"
    );
    // rkt retries every 100 ms while the pod runs (contract §2.2).
    w.ok(&["enter", &uuid, "/bin/true"]);
    assert!(pod.join("pid").exists());
    assert_eq!(
        w.stub_lines("enter.argv")[1],
        format!("--pid={}", child.id())
    );
    w.ok(&["stop", &uuid]);
    assert!(wait_child(&mut child, LONG).success());
}

#[test]
fn enter_fails_when_the_pod_exits_without_a_pid() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let (mut child, uuid) = w.start_with(
        &[
            "run",
            &format!("--stage1-path={}", s1.display()),
            app.to_str().unwrap(),
        ],
        &[("STUB_NO_PID", "1"), ("STUB_PID_DELAY", "1")],
    );
    let o = w.minirkt(&["enter", &uuid, "/bin/true"]);
    assert_eq!(o.status.code(), Some(254));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not running anymore"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!w.out.join("enter.argv").exists());
    wait_child(&mut child, LONG);
}

#[test]
fn enter_uses_the_only_child_of_ppid() {
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    let (mut child, uuid) = w.start_with(
        &[
            "run",
            &format!("--stage1-path={}", s1.display()),
            app.to_str().unwrap(),
        ],
        &[("STUB_WAIT_FOR_STOP", "1"), ("STUB_USE_PPID", "1")],
    );
    let pod = w.pod_dir("run", &uuid);
    wait_for(LONG, || pod.join("ppid").exists().then_some(())).expect("no ppid file");
    // status shows the content of ppid, not its child (contract §4.1).
    assert_eq!(w.status(&uuid).pid, Some(i64::from(child.id())));
    w.ok(&["enter", &uuid, "/bin/true"]);
    let pid_arg = w.stub_lines("enter.argv")[1].clone();
    let pid: u32 = pid_arg.strip_prefix("--pid=").unwrap().parse().unwrap();
    assert_ne!(pid, child.id());
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit(") ")
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, child.id(), "--pid must be the only child of ppid");
    w.ok(&["stop", &uuid]);
    assert!(wait_child(&mut child, LONG).success());
}

#[test]
fn gc_remounts_stage1_for_the_gc_entrypoint_after_a_reboot() {
    // rkt's TestGCAfterUnmount: the overlays vanish (a reboot), gc must still give the
    // gc entrypoint its $s1 and clean up (contract §2.3, rkt/gc.go mountPodStage1).
    let w = World::new();
    let s1 = w.stage1(&Stage1::default());
    let app = w.app("hello", "echo hello");
    w.ok(&[
        "run",
        &format!("--stage1-path={}", s1.display()),
        app.to_str().unwrap(),
    ]);
    let uuid = w.last_uuid();
    minirkt::mountinfo::unmount_all_under(&w.pod_dir("run", &uuid)).unwrap();
    assert!(w.mounts().is_empty());
    assert_eq!(
        w.status(&uuid).apps.get("hello"),
        Some(&0),
        "statuses survive in upper"
    );
    w.ok(&["gc", "--grace-period=0s"]);
    let log = w.stub_lines("gc.log");
    assert!(log.contains(&"s1=yes".to_string()), "{log:?}");
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    assert!(!w.pod_dir("exited-garbage", &uuid).exists());
}
