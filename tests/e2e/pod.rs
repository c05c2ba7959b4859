//! End-to-end: pods in a VM, driven through `minirkt` exactly as rkt v1.30 drives a stage1
//! (issue 7; contract §2–§5.12): the `stage1-kvm.aci` image, its `run`, `enter`, `stop` and
//! `gc` entrypoints, app output and exit codes, stopping, status, garbage collection, and
//! every bad input giving one clear line, exit 254 and nothing left behind.
//!
//! Each test runs with stage0's overlay rendering and with `--no-overlay` where the two
//! differ for the stage1. Pods boot through the `qemu` engine (named explicitly: these
//! machines have no hardware virtualization), one VM at a time.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stage1_kvm_e2e::pod::{
    assert_one_stage1_error, not_executable, stage1_without, strip_app_prefix, PodHost, Render,
    ENGINE, POD_TIMEOUT,
};
use stage1_kvm_e2e::{Finished, EXIT_FAILURE};

/// One VM at a time: the machines are small and shared.
fn one_vm() -> MutexGuard<'static, ()> {
    static VM: Mutex<()> = Mutex::new(());
    VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `sh -c SCRIPT` as an app's exec.
fn sh(script: &str) -> Vec<&str> {
    vec!["/bin/sh", "-c", script]
}

/// An app that runs until SIGTERM, then exits 0 (what a graceful stop expects), after
/// saying `up`.
const UNTIL_TERM: &str = "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done";

#[test]
fn hello_world_exits_0_with_its_output_on_stdout() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let hello = host.image(
            "hello",
            &sh("echo hello world; echo to stderr >&2; printf 'no newline'"),
        );
        let (ended, uuid) = host.run(render, &[], &[&hello]);
        ended.assert_code(0);
        // Contract §5.12: stdout and stderr lines alike reach stage1's stdout, prefixed
        // (the two streams are separate pipes: their relative order is not kept).
        let mut lines = ended.app_lines("hello");
        lines.sort();
        assert_eq!(
            lines,
            ["hello world", "no newline", "to stderr"],
            "{render:?}: {ended:?}"
        );
        assert!(
            ended.stdout_text().lines().all(|l| l.starts_with("hello[")),
            "{ended:?}"
        );
        let status = host.status(&uuid);
        assert_eq!(status.state, "exited", "{status:?}");
        assert_eq!(status.exited, Some(true));
        assert_eq!(status.apps.get("hello"), Some(&0), "{status:?}");
        assert!(
            status.pid.is_some() && status.started.is_some(),
            "{status:?}"
        );
        host.assert_nothing_running();
        host.assert_no_stray_files(&uuid, &["hello"]);
        host.gc_and_assert_clean();
    }
}

#[test]
fn an_app_sees_proc_dev_sys_and_tmp() {
    // Contract §5.5: what rkt's prepare-app gives every app inside its root.
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let script = "test -r /proc/self/status && echo proc; \
             echo x >/dev/null && echo null; \
             test \"$(head -c 8 /dev/urandom | wc -c)\" = 8 && echo urandom; \
             test \"$(head -c 4 /dev/zero | wc -c)\" = 4 && echo zero; \
             test -d /sys/kernel && echo sys; \
             touch /tmp/x && test -k /tmp && echo tmp; \
             test -d /dev/pts && test -d /dev/shm && echo pts-shm; \
             test \"$(readlink /dev/ptmx)\" = /dev/pts/ptmx && echo ptmx; \
             test \"$(cat /etc/hostname)\" = \"$(hostname)\" && echo hostname; \
             echo $AC_APP_NAME";
        let app = host.image("prepared", &sh(script));
        let (ended, uuid) = host.run(render, &[], &[&app]);
        ended.assert_code(0);
        assert_eq!(
            ended.app_lines("prepared"),
            [
                "proc", "null", "urandom", "zero", "sys", "tmp", "pts-shm", "ptmx", "hostname",
                "prepared"
            ],
            "{render:?}: {ended:?}"
        );
        assert_eq!(host.status(&uuid).apps.get("prepared"), Some(&0));
        host.gc_and_assert_clean();
    }
}

#[test]
fn an_exit_code_passes_through_and_status_reports_it() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let five = host.image("five", &sh("echo failing; exit 5"));
        let (ended, uuid) = host.run(render, &[], &[&five]);
        ended.assert_code(5);
        assert_eq!(ended.app_lines("five"), ["failing"]);
        let status = host.status(&uuid);
        assert_eq!(
            (status.state.as_str(), status.apps.get("five")),
            ("exited", Some(&5)),
            "{render:?}: {status:?}"
        );
        host.gc_and_assert_clean();
    }
}

#[test]
fn one_app_of_three_failing_stops_the_others_and_decides_the_exit_code() {
    // Contract §5.11 (TestExitCodeWithSeveralApps): the failing app's code is the pod's, the
    // others are stopped, and every app has a status.
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let graceful = host.image("graceful", &sh(UNTIL_TERM));
        let failing = host.image("failing", &sh("sleep 2; echo failing now; exit 5"));
        let plain = host.image("plain", &sh("echo up; sleep 1000"));
        let started = Instant::now();
        let (ended, uuid) = host.run(render, &[], &[&graceful, &failing, &plain]);
        ended.assert_code(5);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the other apps were not stopped: {:?}",
            started.elapsed()
        );
        assert_eq!(
            ended.app_lines_but_terminated("graceful"),
            ["up", "bye"],
            "{ended:?}"
        );
        assert_eq!(ended.app_lines("failing"), ["failing now"]);
        let status = host.status(&uuid);
        assert_eq!(status.state, "exited");
        // SIGTERM ends the plain shell: 128 + 15.
        assert_eq!(
            status.apps,
            [
                ("failing".to_owned(), 5),
                ("graceful".to_owned(), 0),
                ("plain".to_owned(), 143)
            ]
            .into_iter()
            .collect(),
            "{render:?}: {status:?}"
        );
        host.gc_and_assert_clean();
    }
}

#[test]
fn an_app_killed_by_a_signal_exits_128_plus_the_signal() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let killed = host.image("killed", &sh("echo dying; kill -9 $$"));
        let (ended, uuid) = host.run(render, &[], &[&killed]);
        ended.assert_code(137);
        assert_eq!(ended.app_lines("killed"), ["dying"]);
        assert_eq!(host.status(&uuid).apps.get("killed"), Some(&137));
        host.gc_and_assert_clean();
    }
}

/// The bytes `seq 1 n` prints.
fn seq_bytes(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(i.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[test]
fn sixteen_mib_from_an_app_that_exits_at_once_arrive_whole() {
    // seq 1 2300000 prints 17.2 MB (> 16 MiB) and exits the moment its last write returns.
    const N: u32 = 2_300_000;
    let expected = seq_bytes(N);
    assert!(expected.len() > 16 << 20);
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let big = host.image("big", &["/bin/seq", "1", &N.to_string()]);
        let (ended, uuid) = host.run(render, &[], &[&big]);
        assert_eq!(ended.code(), Some(0), "{render:?}: stderr {}", ended.stderr);
        let mut got = Vec::with_capacity(expected.len());
        let mut foreign = 0;
        for line in ended.stdout.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match std::str::from_utf8(line)
                .ok()
                .and_then(|l| strip_app_prefix(l, "big"))
            {
                Some(text) => {
                    got.extend_from_slice(text.as_bytes());
                    got.push(b'\n');
                }
                None => foreign += 1,
            }
        }
        assert_eq!(foreign, 0, "lines without the app's prefix");
        assert!(
            got == expected,
            "{render:?}: {} bytes arrived, {} expected (first difference at {:?})",
            got.len(),
            expected.len(),
            got.iter().zip(&expected).position(|(a, b)| a != b)
        );
        assert_eq!(host.status(&uuid).apps.get("big"), Some(&0));
        host.gc_and_assert_clean();
    }
}

#[test]
fn status_and_list_while_running_and_after() {
    let _vm = one_vm();
    let host = PodHost::new();
    let app = host.image("server", &sh(UNTIL_TERM));
    let mut pod = host.spawn(Render::Overlay, &[], &[&app]);
    let uuid = pod.uuid();
    pod.wait_for_line("server", "up");
    // Contract §4.1: running → no app statuses; pid is the stage1's (same as stage0's: exec).
    let running = host.status(&uuid);
    assert_eq!(running.state, "running", "{running:?}");
    assert_eq!(running.exited, Some(false));
    assert_eq!(running.pid, Some(i64::from(pod.pid())));
    assert!(running.apps.is_empty(), "{running:?}");
    assert!(running.started.is_some(), "{running:?}");
    let line = host.list_line(&uuid).expect("the pod is listed");
    assert!(
        line.contains("\tserver\t") && line.contains("running"),
        "{line:?}"
    );

    let stop = host.minirkt(&["stop", &uuid]).output().unwrap();
    assert!(stop.status.success(), "{stop:?}");
    pod.wait().assert_code(0);
    let after = host.status(&uuid);
    assert_eq!(after.state, "exited", "{after:?}");
    assert_eq!(after.exited, Some(true));
    assert_eq!(after.pid, running.pid);
    assert_eq!(after.apps.get("server"), Some(&0));
    let line = host.list_line(&uuid).expect("the pod is still listed");
    assert!(line.contains("exited"), "{line:?}");
    host.gc_and_assert_clean();
    assert_eq!(host.list_line(&uuid), None);
}

#[test]
fn stop_is_graceful_statuses_are_written_and_run_exits_0() {
    // Contract §2.4 (TestRktStop): a graceful stop of an app that exits 0 on SIGTERM makes
    // run exit 0.
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let first = host.image("first", &sh(UNTIL_TERM));
        let second = host.image("second", &sh(UNTIL_TERM));
        let mut pod = host.spawn(render, &[], &[&first, &second]);
        let uuid = pod.uuid();
        pod.wait_for_line("first", "up");
        pod.wait_for_line("second", "up");
        let stop = host.minirkt(&["stop", &uuid]).output().unwrap();
        assert!(stop.status.success(), "{stop:?}");
        assert_eq!(
            String::from_utf8_lossy(&stop.stdout).trim(),
            format!("{uuid:?}")
        );
        let ended = pod.wait();
        ended.assert_code(0);
        assert_eq!(ended.app_lines_but_terminated("first"), ["up", "bye"]);
        assert_eq!(ended.app_lines_but_terminated("second"), ["up", "bye"]);
        let status = host.wait_for_state(&uuid, "exited", Duration::from_secs(15));
        assert_eq!(
            (status.apps.get("first"), status.apps.get("second")),
            (Some(&0), Some(&0)),
            "{render:?}: {status:?}"
        );
        host.assert_nothing_running();
        host.assert_no_stray_files(&uuid, &["first", "second"]);
        // Stopping an exited pod is no error (rkt: "already stopped").
        let again = host.minirkt(&["stop", &uuid]).output().unwrap();
        assert!(again.status.success(), "{again:?}");
        host.gc_and_assert_clean();
    }
}

#[test]
fn a_stop_while_the_vm_boots_is_graceful_too() {
    // `rkt stop` works as soon as the pod runs (contract §2.4): here, once the pid file is
    // written (before the VM boots), which is typically before any app started.
    let _vm = one_vm();
    for (render, when_qemu_runs) in [
        (Render::Overlay, false),
        (Render::Copy, false),
        (Render::Overlay, true),
        (Render::Copy, true),
    ] {
        let host = PodHost::new();
        let app = host.image("early", &sh(UNTIL_TERM));
        let mut pod = host.spawn(render, &[], &[&app]);
        let uuid = pod.uuid();
        let deadline = Instant::now() + POD_TIMEOUT;
        while host.status(&uuid).pid.is_none() {
            assert!(
                Instant::now() < deadline && !pod.ended(),
                "{:?}",
                pod.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        if when_qemu_runs {
            qemu_of(&host);
        }
        let stop = host.minirkt(&["stop", &uuid]).output().unwrap();
        assert!(stop.status.success(), "{stop:?}");
        let ended = pod.wait();
        ended.assert_code(0);
        // Either the apps never started, or they started and were stopped gracefully.
        let lines = ended.app_lines_but_terminated("early");
        assert!(lines.is_empty() || lines == ["up", "bye"], "{ended:?}");
        let status = host.wait_for_state(&uuid, "exited", Duration::from_secs(15));
        assert!(
            status.apps.is_empty() || status.apps.get("early") == Some(&0),
            "{status:?}"
        );
        host.assert_nothing_running();
        host.gc_and_assert_clean();
    }
}

#[test]
fn stop_force_kills_the_vm() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        // Ignores SIGTERM: only a forced stop ends it.
        let stubborn = host.image(
            "stubborn",
            &sh("trap '' TERM; echo up; while true; do sleep 0.1; done"),
        );
        let mut pod = host.spawn(render, &[], &[&stubborn]);
        let uuid = pod.uuid();
        pod.wait_for_line("stubborn", "up");
        let stop = host.minirkt(&["stop", "--force", &uuid]).output().unwrap();
        assert!(stop.status.success(), "{stop:?}");
        let ended = pod.wait();
        assert_ne!(ended.code(), Some(0), "{ended:?}");
        host.wait_for_state(&uuid, "exited", Duration::from_secs(15));
        // The run process was killed: its sockets stay in the pod directory until gc.
        host.assert_no_processes();
        host.assert_only_stage0_mounts();
        host.gc_and_assert_clean();
    }
}

#[test]
fn sigterm_to_run_is_a_graceful_stop() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let app = host.image("app", &sh(UNTIL_TERM));
        let mut pod = host.spawn(render, &[], &[&app]);
        let uuid = pod.uuid();
        pod.wait_for_line("app", "up");
        pod.signal(libc::SIGTERM);
        let ended = pod.wait();
        ended.assert_code(0);
        assert_eq!(ended.app_lines_but_terminated("app"), ["up", "bye"]);
        assert_eq!(host.status(&uuid).apps.get("app"), Some(&0));
        host.assert_nothing_running();
        host.gc_and_assert_clean();
    }
}

#[test]
fn enter_runs_a_command_in_the_app_and_passes_its_exit_code_through() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let app = host.image("entered", &sh(UNTIL_TERM));
        let mut pod = host.spawn(render, &[], &[&app]);
        let uuid = pod.uuid();
        pod.wait_for_line("entered", "up");
        let name = Finished::run(&mut host.minirkt(&[
            "enter",
            &uuid,
            "/bin/sh",
            "-c",
            "echo $AC_APP_NAME; test -f /bin/busybox && echo in-app-root",
        ]));
        assert_eq!(
            (name.code, name.stdout.as_str()),
            (Some(0), "entered\nin-app-root\n"),
            "{render:?}: {name:?}"
        );
        let code = Finished::run(&mut host.minirkt(&["enter", &uuid, "/bin/sh", "-c", "exit 7"]));
        assert_eq!(code.code, Some(7), "{code:?}");
        let missing = Finished::run(&mut host.minirkt(&["enter", &uuid, "/foo-not-there"]));
        assert_eq!(missing.code, Some(EXIT_FAILURE), "{missing:?}");
        assert_one_stage1_error(
            &missing.stderr,
            "Unable to open \"/foo-not-there\": No such file or directory",
        );
        pod.signal(libc::SIGTERM);
        pod.wait().assert_code(0);
        host.gc_and_assert_clean();
    }
}

/// The stage1 `gc` entrypoint of pod `uuid` in `exited-garbage`, run as stage0 runs it
/// (contract §2.3: cwd the pod, `--local-config <dir>` as two words).
fn stage1_gc(host: &PodHost, uuid: &str) -> Finished {
    let pod = host.pod_dir(uuid).expect("the pod exists");
    assert!(pod.starts_with(host.data().join("pods/exited-garbage")));
    Finished::run(
        std::process::Command::new(pod.join("stage1/rootfs/gc"))
            .args(["--local-config", "/etc/rkt", uuid])
            .current_dir(&pod),
    )
}

#[test]
fn gc_is_idempotent_and_leaves_nothing() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let app = host.image("once", &sh("echo once"));
        let (ended, uuid) = host.run(render, &[], &[&app]);
        ended.assert_code(0);
        let marked = host
            .minirkt(&["gc", "--mark-only"])
            .output()
            .unwrap()
            .status;
        assert!(marked.success());
        for round in 1..=2 {
            let gc = stage1_gc(&host, &uuid);
            assert_eq!(gc.code, Some(0), "{render:?} stage1 gc #{round}: {gc:?}");
            assert!(gc.stderr.is_empty(), "{gc:?}");
        }
        host.assert_nothing_running();
        host.gc();
        host.gc();
        host.assert_clean();
        assert!(host.pod_dir(&uuid).is_none());
    }
}

#[test]
fn pods_that_never_started_gc_cleanly() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let app = host.image("idle", &sh("true"));
        // Prepared and never run: gc expires it (no stage1 gc, contract §3.1).
        let flags = match render {
            Render::Overlay => vec!["prepare"],
            Render::Copy => vec!["prepare", "--no-overlay"],
        };
        let stage1 = format!("--stage1-path={}", host.stage1().display());
        let mut args = flags.clone();
        args.push(&stage1);
        args.push(app.to_str().unwrap());
        let prepared = host.minirkt(&args).output().unwrap();
        assert!(prepared.status.success(), "{prepared:?}");
        let prepared_uuid = String::from_utf8_lossy(&prepared.stdout).trim().to_owned();
        let gc = host
            .minirkt(&["gc", "--grace-period=0s", "--expire-prepared=0s"])
            .output()
            .unwrap();
        assert!(gc.status.success(), "{gc:?}");
        assert!(host.pod_dir(&prepared_uuid).is_none());

        // Run, but refused before the VM booted: stage1 gc runs on a pod with nothing of
        // the stage1's in it.
        let (ended, uuid) = host.run(render, &["--net=default"], &[&app]);
        ended.assert_stage1_failure("networking is not implemented yet");
        assert_eq!(host.status(&uuid).state, "exited");
        host.gc_and_assert_clean();
        assert!(host.pod_dir(&uuid).is_none());
    }
}

// ---- Bad input: one clear line, exit 254, nothing left behind. ----

/// A prepared `--no-overlay` pod (its stage1 rootfs is a plain copy, so the entrypoints
/// can be called directly from it) and its directory.
fn prepared_copy(host: &PodHost, app: &Path) -> (String, std::path::PathBuf) {
    let stage1 = format!("--stage1-path={}", host.stage1().display());
    let out = host
        .minirkt(&["prepare", "--no-overlay", &stage1, app.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let uuid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let dir = host.pod_dir(&uuid).unwrap();
    (uuid, dir)
}

/// The stage1's `run` entrypoint (`/init`) called as stage0 would, from the pod directory.
fn call_run_entrypoint(pod: &Path, args: &[&str]) -> Finished {
    Finished::run(
        std::process::Command::new(pod.join("stage1/rootfs/init"))
            .args(args)
            .current_dir(pod)
            .env("STAGE1_KVM_ENGINE", ENGINE)
            .stdin(std::process::Stdio::null()),
    )
}

#[test]
fn unknown_or_malformed_flags_and_a_missing_uuid_are_refused() {
    let host = PodHost::new();
    let app = host.image("app", &sh("true"));
    let (uuid, pod) = prepared_copy(&host, &app);
    for (args, needle) in [
        (
            vec!["--net=none", "--bogus", uuid.as_str()],
            "unknown flag --bogus",
        ),
        (
            vec!["--net=none", "--debug=maybe", uuid.as_str()],
            "invalid boolean value \"maybe\" for --debug",
        ),
        (vec!["--net=none", "--hostname"], "--hostname needs a value"),
        (vec!["--net=none"], "the pod UUID"),
        (vec!["--net=none", uuid.as_str(), "extra"], "the pod UUID"),
    ] {
        let run = call_run_entrypoint(&pod, &args);
        run.assert_one_line_failure(needle);
        assert!(run.stdout.is_empty(), "{run:?}");
        // Refused before anything was done: not even the pid file.
        assert!(!pod.join("pid").exists(), "{args:?}");
    }
    host.assert_nothing_running();
    assert!(host.mounts().is_empty());
}

#[test]
fn stopping_a_pod_that_is_not_running_is_refused_and_signals_nobody() {
    // Contract §2.4: 254 with a reason when the pod does not run. Its pid file may outlive
    // it and name a process that has nothing to do with the pod.
    let host = PodHost::new();
    let app = host.image("app", &sh("true"));
    let (uuid, pod) = prepared_copy(&host, &app);
    let stop = |args: &[&str]| {
        Finished::run(
            std::process::Command::new(pod.join("stage1/rootfs/stop"))
                .args(args)
                .current_dir(&pod),
        )
    };
    stop(&[&uuid]).assert_one_line_failure("is not running");
    let mut stranger = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(pod.join("pid"), format!("{}\n", stranger.id())).unwrap();
    for args in [vec![uuid.as_str()], vec!["--force", uuid.as_str()]] {
        stop(&args).assert_one_line_failure("is not running");
    }
    assert_eq!(
        stranger.try_wait().unwrap(),
        None,
        "the stranger was signalled"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn a_corrupt_or_missing_pod_manifest_is_refused() {
    let host = PodHost::new();
    let app = host.image("app", &sh("true"));
    let (uuid, pod) = prepared_copy(&host, &app);
    std::fs::write(pod.join("pod"), "{\"acKind\": \"PodManifest\", ").unwrap();
    call_run_entrypoint(&pod, &["--net=none", &uuid]).assert_one_line_failure("pod manifest");
    std::fs::write(pod.join("pod"), "[]").unwrap();
    call_run_entrypoint(&pod, &["--net=none", &uuid]).assert_one_line_failure("pod manifest");
    std::fs::remove_file(pod.join("pod")).unwrap();
    call_run_entrypoint(&pod, &["--net=none", &uuid]).assert_one_line_failure("pod manifest");
    host.assert_nothing_running();
    assert!(host.mounts().is_empty());
}

#[test]
fn an_app_whose_rootfs_is_missing_is_refused() {
    let host = PodHost::new();
    let app = host.image("rootless", &sh("true"));
    let (uuid, pod) = prepared_copy(&host, &app);
    std::fs::remove_dir_all(pod.join("stage1/rootfs/opt/stage2/rootless/rootfs")).unwrap();
    let run = host
        .minirkt(&["run-prepared", "--net=none", &uuid])
        .output();
    let run = stage1_kvm_e2e::pod::Ended::from(run.unwrap());
    run.assert_stage1_failure("app rootless: its rootfs");
    assert_eq!(host.status(&uuid).state, "exited");
    host.assert_nothing_running();
    host.gc_and_assert_clean();
}

#[test]
fn an_exec_that_does_not_exist_or_cannot_run_is_named() {
    // Contract §5.11: like rkt's /diagnostic, `Unable to open "<path>": <reason>`.
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let missing = host.image("missing", &["/foo-not-there"]);
        let (ended, uuid) = host.run(render, &[], &[&missing]);
        ended.assert_stage1_failure(
            "app missing: Unable to open \"/foo-not-there\": No such file or directory",
        );
        assert_eq!(host.status(&uuid).state, "exited");
        host.assert_nothing_running();
        host.assert_only_stage0_mounts();
        host.assert_no_stray_files(&uuid, &[]);

        let denied = host.image_with("denied", &["/not-executable"], |rootfs| {
            not_executable(&rootfs.join("not-executable"));
        });
        let (ended, _) = host.run(render, &[], &[&denied]);
        ended.assert_stage1_failure(
            "app denied: Unable to open \"/not-executable\": Permission denied",
        );
        host.assert_nothing_running();
        host.gc_and_assert_clean();
    }
}

#[test]
fn a_stage1_image_without_its_kernel_is_refused() {
    let _vm = one_vm();
    let scratch = tempfile::tempdir().unwrap();
    let broken = stage1_without(&stage1_kvm_e2e::stage1_aci(), scratch.path(), |p| {
        p == Path::new("kvm/vmlinux")
    });
    for render in Render::BOTH {
        let host = PodHost::with_stage1(broken.clone());
        let app = host.image("app", &sh("echo never"));
        let (ended, uuid) = host.run(render, &[], &[&app]);
        ended.assert_stage1_failure("the stage1 image has no guest kernel");
        ended.assert_stage1_failure("kvm/vmlinux is missing");
        assert_eq!(host.status(&uuid).state, "exited");
        host.assert_nothing_running();
        host.assert_no_stray_files(&uuid, &[]);
        host.assert_only_stage0_mounts();
        host.gc_and_assert_clean();
    }
}

/// Whether this host has hardware virtualization (then the kvm engine can run).
fn hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        })
        .unwrap_or(false)
}

#[test]
fn an_unknown_or_unusable_engine_is_refused() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let app = host.image("app", &sh("echo hi"));
        let (mut command, uuid_file) = host.run_command(render, &[], &[&app]);
        let unknown = stage1_kvm_e2e::pod::Ended::from(
            command.env("STAGE1_KVM_ENGINE", "warp").output().unwrap(),
        );
        unknown.assert_stage1_failure("STAGE1_KVM_ENGINE");
        assert!(unknown.stderr.contains("warp"), "{unknown:?}");
        let uuid = std::fs::read_to_string(uuid_file).unwrap();
        assert_eq!(host.status(&uuid).state, "exited");

        let (mut command, _) = host.run_command(render, &[], &[&app]);
        let kvm = stage1_kvm_e2e::pod::Ended::from(
            command.env("STAGE1_KVM_ENGINE", "kvm").output().unwrap(),
        );
        if hardware_virtualization() {
            kvm.assert_code(0);
        } else {
            // This host's /dev/kvm (if any) is PVM: no vmx/svm, so the strict choice fails.
            kvm.assert_stage1_failure(
                "STAGE1_KVM_ENGINE=kvm: the kvm engine needs hardware virtualization",
            );
        }
        host.assert_nothing_running();
        host.gc_and_assert_clean();
    }
}

#[test]
fn networking_other_than_none_is_refused() {
    let host = PodHost::new();
    let app = host.image("app", &sh("echo never"));
    for render in Render::BOTH {
        for net in ["--net=default", "--net=host", "--net=none,default"] {
            let (ended, uuid) = host.run(render, &[net], &[&app]);
            ended.assert_stage1_failure("networking is not implemented yet");
            assert_eq!(host.status(&uuid).state, "exited");
        }
        host.assert_nothing_running();
        host.gc_and_assert_clean();
    }
}

/// The QEMU process of the only running pod of `host`.
fn qemu_of(host: &PodHost) -> u32 {
    let deadline = Instant::now() + POD_TIMEOUT;
    loop {
        let qemus: Vec<u32> = host
            .processes()
            .into_iter()
            .filter(|(_, cmdline)| cmdline.contains("qemu-system"))
            .map(|(pid, _)| pid)
            .collect();
        match qemus.as_slice() {
            [one] => return *one,
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => panic!("expected one QEMU process, found {qemus:?}"),
        }
    }
}

fn sigkill(pid: u32) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill(2) takes a pid and a signal number; no memory of ours.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

#[test]
fn the_vmm_killed_mid_run_is_an_error_and_gc_cleans_up() {
    let _vm = one_vm();
    for render in Render::BOTH {
        let host = PodHost::new();
        let app = host.image("victim", &sh(UNTIL_TERM));

        // QEMU killed under the run process: run reports it and exits 254.
        let mut pod = host.spawn(render, &[], &[&app]);
        let uuid = pod.uuid();
        pod.wait_for_line("victim", "up");
        sigkill(qemu_of(&host));
        let ended = pod.wait();
        ended.assert_stage1_failure("QEMU failed (signal: 9 (SIGKILL))");
        assert_eq!(host.status(&uuid).state, "exited");
        host.assert_nothing_running();
        host.assert_only_stage0_mounts();
        host.assert_no_stray_files(&uuid, &[]);

        // The run process itself (the pid file's) killed: the VM dies with it.
        let mut pod = host.spawn(render, &[], &[&app]);
        let uuid = pod.uuid();
        pod.wait_for_line("victim", "up");
        let pid = host.status(&uuid).pid.expect("a pid while running");
        assert_eq!(pid, i64::from(pod.pid()));
        sigkill(pod.pid());
        let ended = pod.wait();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&ended.status),
            Some(libc::SIGKILL)
        );
        host.wait_for_state(&uuid, "exited", Duration::from_secs(15));
        let status = host.status(&uuid);
        assert_eq!(status.exited, Some(true), "{status:?}");
        host.assert_no_processes();
        host.gc_and_assert_clean();
    }
}
