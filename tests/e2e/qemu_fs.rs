//! End-to-end: virtio-fs shares through the `qemu` engine (our file server served to QEMU's
//! `vhost-user-fs-device`), each test against a fresh host directory.
//!
//! Every test boots `stage1-kvm vm --share t=<sandbox>/share --share tools=<sandbox>/tools:ro
//! -- /bin/sh -c SCRIPT`: the guest has busybox, and `tools` holds `fsh`, a small static C
//! helper (`qemu_fs_helper.c`, built here with `gcc -static`) for the system calls busybox
//! does not make. Next to the share, `<sandbox>/outside/secret` is a host file the guest must
//! never reach; escape tests compare a snapshot of everything outside the share before and
//! after the guest ran.
//!
//! Guest scripts run under `set -eu`, so an unexpected failure is a non-zero exit, and
//! check expected failures with `refused ERROR CMD…` (see [`PRELUDE`]).
//!
//! What these tests can and cannot show: a guest program's requests pass through the
//! guest's kernel, which resolves paths itself (`..`, symlinks) and sends the device one
//! name at a time, so the escape tests prove what a program in the guest gets, with the
//! host's side checked after. Requests only a hostile guest kernel would send (LOOKUP of
//! `..` on the root, names with `/`, forged node ids, absurd sizes) are the device's unit
//! tests over mock queues (`vmm/src/devices/virtio/fs/tests/`).
//!
//! Not end to end here, and why:
//! - file handles of one share used on another: the guest kernel never sends another
//!   mount's node ids or handles, so no shell command can; the device's unit tests
//!   (`ids_of_one_share_mean_nothing_on_another`) send them over mock queues;
//! - shares that allow device nodes: the developer CLI never allows them (the option exists
//!   for the pod's volumes); the device's and the sandbox's unit tests cover it;
//! - a hard link planted by the host inside a share to a file outside is the host's own
//!   decision and is served like any file ([`hard_links_never_reach_outside_the_share`]
//!   shows it); the guest cannot make one.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use stage1_kvm_e2e::{send_signal, stage1_bin, Finished, Sandbox};

const ENGINE: &str = "qemu";
const MEM: &str = "512";
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Shell functions every guest script starts with.
///
/// `refused ERROR CMD…` runs CMD, which must fail with ERROR (the text of an errno, as the
/// tool prints it) in its output; it prints `refused: CMD: ERROR` when it does, and a line
/// starting with `NOT REFUSED` or `WRONG ERROR` otherwise ([`assert_ran`] fails on those).
const PRELUDE: &str = r#"set -eu
refused() {
    want=$1; shift
    if out=$("$@" 2>&1); then echo "NOT REFUSED: $*: $out"; return 0; fi
    case $out in
        *"$want"*) echo "refused: $*: $want" ;;
        *) echo "WRONG ERROR: $*: $out (wanted $want)" ;;
    esac
}
fsh=/mnt/tools/fsh
cd /mnt/t
"#;

/// `fsh`, built once per test process from `qemu_fs_helper.c`.
fn helper() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu_fs");
        fs::create_dir_all(&dir).unwrap();
        let pid = std::process::id();
        let source = dir.join(format!("fsh-{pid}.c"));
        fs::write(&source, include_str!("qemu_fs_helper.c")).unwrap();
        let built = dir.join(format!("fsh-{pid}"));
        let output = Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&built)
            .arg(&source)
            .output()
            .expect("running gcc (make deps installs it)");
        assert!(
            output.status.success(),
            "gcc -static failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        fs::remove_file(&source).unwrap();
        // Concurrent test processes each build their own and the last rename wins.
        let helper = dir.join("fsh");
        fs::rename(&built, &helper).unwrap();
        helper
    })
}

/// A test's host side: a sandbox holding the share (`share/`, tag `t`), the read-only
/// `tools` share with the helper, and `outside/secret`.
struct Host {
    sandbox: Sandbox,
}

/// What the guest could see of a host file outside the share if it escaped.
const SECRET: &str = "host secret, never for the guest\n";

impl Host {
    fn new() -> Self {
        let sandbox = Sandbox::with_busybox();
        let root = sandbox.path();
        fs::create_dir(root.join("share")).unwrap();
        fs::create_dir(root.join("tools")).unwrap();
        fs::copy(helper(), root.join("tools/fsh")).unwrap();
        fs::create_dir(root.join("outside")).unwrap();
        fs::write(root.join("outside/secret"), SECRET).unwrap();
        Self { sandbox }
    }

    fn root(&self) -> &Path {
        self.sandbox.path()
    }

    /// The share's directory, mounted at `/mnt/t` in the guest.
    fn share(&self) -> PathBuf {
        self.root().join("share")
    }

    /// A path in the share.
    fn at(&self, rel: &str) -> PathBuf {
        self.share().join(rel)
    }

    fn secret(&self) -> PathBuf {
        self.root().join("outside/secret")
    }

    /// `--share` flags for the share, the tools and `extra` (`TAG=DIR[:ro]`).
    fn share_flags(&self, extra: &[String]) -> Vec<String> {
        let mut flags = vec![
            format!("t={}", self.share().display()),
            format!("tools={}:ro", self.root().join("tools").display()),
        ];
        flags.extend_from_slice(extra);
        flags
            .into_iter()
            .flat_map(|share| ["--share".to_owned(), share])
            .collect()
    }

    /// Boots the guest with the shares and runs [`PRELUDE`] + `script`.
    fn guest(&self, script: &str) -> Finished {
        self.guest_with(&[], &[], script)
    }

    /// [`Self::guest`] with more `--share`s and `vm` flags.
    fn guest_with(&self, shares: &[String], flags: &[&str], script: &str) -> Finished {
        let mut args: Vec<String> = vec!["--mem".into(), MEM.into()];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        args.extend(self.share_flags(shares));
        args.extend(["--", "/bin/sh", "-c"].map(str::to_owned));
        args.push(format!("{PRELUDE}{script}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = Finished::run(&mut self.sandbox.vm_command(ENGINE, &args));
        self.sandbox.assert_nothing_left();
        run
    }

    /// Everything in the sandbox but the share (see [`snapshot`]).
    fn outside_the_share(&self) -> Snapshot {
        snapshot(self.root(), &["share"])
    }
}

/// Asserts a guest script ran to its end (exit 0) and every `refused` check held.
fn assert_ran(run: &Finished) {
    let bad: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("NOT REFUSED") || l.starts_with("WRONG ERROR"))
        .collect();
    assert!(
        run.code == Some(0) && bad.is_empty(),
        "guest script failed (exit {:?}): {bad:?}\n--- stdout\n{}--- stderr\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
}

/// The lines of the guest's output that follow the line `marker` up to the next `== `
/// marker, with or without the `refused: ` reports among them.
fn lines_after<'a>(run: &'a Finished, marker: &str, refusals: bool) -> Vec<&'a str> {
    assert!(
        run.stdout.lines().any(|l| l == marker),
        "no {marker:?} in the guest's output:\n{}",
        run.stdout
    );
    run.stdout
        .lines()
        .skip_while(|l| *l != marker)
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .filter(|l| refusals || !l.starts_with("refused: "))
        .collect()
}

/// What the guest printed after `marker` (see [`lines_after`]), without the refusals.
fn section<'a>(run: &'a Finished, marker: &str) -> Vec<&'a str> {
    lines_after(run, marker, false)
}

/// Asserts the guest printed the line `refused: CMD: ERROR` for `cmd`.
fn assert_refused(run: &Finished, cmd: &str, error: &str) {
    let line = format!("refused: {cmd}: {error}");
    assert!(
        run.stdout.lines().any(|l| l == line),
        "no {line:?} in the guest's output:\n{}",
        run.stdout
    );
}

/// A description of every entry under a directory (symlinks not followed): type, mode,
/// owner, link count, size, modification and change times, a hash of the contents or the
/// link target, and the extended attributes. Reading changes none of it (atime is left
/// out), so two snapshots differ exactly when something changed.
type Snapshot = BTreeMap<PathBuf, String>;

fn snapshot(root: &Path, skip: &[&str]) -> Snapshot {
    let mut out = Snapshot::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            if meta.is_file() {
                fs::read(&path).unwrap().hash(&mut hasher);
            } else if meta.is_symlink() {
                fs::read_link(&path).unwrap().hash(&mut hasher);
            } else if meta.is_dir() {
                todo.push(path.clone());
            }
            out.insert(
                rel,
                format!(
                    "mode {:o} owner {}:{} links {} size {} mtime {}.{} ctime {}.{} data {:x} xattrs {:?}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.nlink(),
                    meta.size(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ctime(),
                    meta.ctime_nsec(),
                    hasher.finish(),
                    xattrs(&path)
                ),
            );
        }
    }
    out
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// The extended attributes of `path` (not followed), sorted, with their values.
fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let cpath = c_path(path);
    let mut names = vec![0u8; 65536];
    // SAFETY: the buffer is valid for its length; llistxattr writes at most that much.
    let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let n = usize::try_from(n).unwrap_or_else(|_| {
        panic!(
            "llistxattr {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )
    });
    let mut out: Vec<(String, Vec<u8>)> = names[..n]
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let name = String::from_utf8_lossy(name).into_owned();
            let value = get_xattr(path, &name).unwrap();
            (name, value)
        })
        .collect();
    out.sort();
    out
}

/// One extended attribute's value (`None` if it is not set).
fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let cpath = c_path(path);
    let cname = CString::new(name).unwrap();
    let mut value = vec![0u8; 65536];
    // SAFETY: as above.
    let n = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        assert_eq!(err.raw_os_error(), Some(libc::ENODATA), "lgetxattr {name}");
        return None;
    }
    value.truncate(usize::try_from(n).unwrap());
    Some(value)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let cpath = c_path(path);
    let cname = CString::new(name).unwrap();
    // SAFETY: all pointers are valid for the lengths given.
    let rc = unsafe {
        libc::lsetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "lsetxattr: {}", std::io::Error::last_os_error());
}

/// `sha256sum FILE` on the host: the hex digest.
fn host_sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()[..64].to_owned()
}

/// `n` bytes that are not all alike.
fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

// ---------------------------------------------------------------------------------------
// File operations

#[test]
fn files_and_directories_are_created_changed_and_removed_on_the_host() {
    let host = Host::new();
    fs::write(host.at("from-host"), "written by the host\n").unwrap();
    fs::create_dir_all(host.at("host-dir/sub")).unwrap();
    fs::write(host.at("host-dir/sub/file"), "x").unwrap();
    let run = host.guest(
        r#"
echo "== from the host"; cat from-host
echo one > f; echo two >> f
echo "== appended"; cat f
printf 0123456789 > t; truncate -s 4 t; truncate -s 6 t
echo "== truncated"; od -An -c t
mv f renamed
echo new > a; echo old > b; mv a b
mkdir -p d/e; echo deep > d/e/file; mv d/e d/moved
mkdir gone; rmdir gone
echo bye > del; rm del
rm -r host-dir
# Removed and replaced while open (as package managers do): the descriptor keeps the file.
echo "still here" > open; exec 3<open; rm open
echo "replaced" > over; exec 4<over; echo "new content" > new-over; mv new-over over
echo "== open"; cat <&3; cat <&4; cat over; exec 3<&- 4<&-
refused 'Directory not empty' rmdir d
refused 'No such file or directory' rm missing
refused 'Not a directory' ls renamed/x
refused 'File exists' mkdir d
echo "== listing"; ls -a
"#,
    );
    assert_ran(&run);
    assert_eq!(section(&run, "== from the host"), ["written by the host"]);
    assert_eq!(section(&run, "== appended"), ["one", "two"]);
    assert_eq!(
        section(&run, "== open"),
        ["still here", "replaced", "new content"]
    );
    assert_eq!(
        section(&run, "== truncated"),
        ["   0   1   2   3  \\0  \\0"]
    );
    // fuse-backend-rs leaves "." and ".." out of directory listings.
    assert_eq!(
        section(&run, "== listing"),
        ["b", "d", "from-host", "over", "renamed", "t"]
    );

    assert_eq!(
        fs::read_to_string(host.at("renamed")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(fs::read(host.at("t")).unwrap(), b"0123\0\0");
    assert_eq!(fs::read_to_string(host.at("b")).unwrap(), "new\n");
    assert_eq!(
        fs::read_to_string(host.at("d/moved/file")).unwrap(),
        "deep\n"
    );
    let mut names: Vec<String> = fs::read_dir(host.share())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "d", "from-host", "over", "renamed", "t"]);
    assert_eq!(
        fs::read_to_string(host.at("over")).unwrap(),
        "new content\n"
    );
    assert!(!host.at("d/e").exists());
}

#[test]
fn symlinks_and_hard_links_inside_the_share() {
    let host = Host::new();
    let run = host.guest(
        r#"
echo target > file
ln -s file rel-link; ln -s /mnt/t/file abs-link; ln -s nowhere broken
mkdir dir; ln -s dir dir-link; echo through > dir-link/x
echo "== readlink"; readlink rel-link; readlink abs-link; readlink broken
echo "== followed"; cat rel-link abs-link dir/x
refused 'No such file or directory' cat broken
ln file hard
echo more >> hard
echo "== links"; stat -c '%h %F' file hard rel-link; cat file
[ "$(stat -c %i file)" = "$(stat -c %i hard)" ]
ln file doomed; rm doomed
chown -h 42:43 rel-link
"#,
    );
    assert_ran(&run);
    assert_eq!(
        section(&run, "== readlink"),
        ["file", "/mnt/t/file", "nowhere"]
    );
    assert_eq!(
        section(&run, "== followed"),
        ["target", "target", "through"]
    );
    assert_eq!(
        section(&run, "== links"),
        [
            "2 regular file",
            "2 regular file",
            "1 symbolic link",
            "target",
            "more"
        ]
    );

    // Stored verbatim; the host never follows them.
    assert_eq!(
        fs::read_link(host.at("rel-link")).unwrap(),
        Path::new("file")
    );
    assert_eq!(
        fs::read_link(host.at("abs-link")).unwrap(),
        Path::new("/mnt/t/file")
    );
    assert_eq!(
        fs::read_link(host.at("dir-link")).unwrap(),
        Path::new("dir")
    );
    let link = fs::symlink_metadata(host.at("rel-link")).unwrap();
    assert_eq!(
        (link.uid(), link.gid()),
        (42, 43),
        "chown -h changes the link"
    );
    let file = fs::metadata(host.at("file")).unwrap();
    let hard = fs::metadata(host.at("hard")).unwrap();
    assert_eq!((file.ino(), file.nlink()), (hard.ino(), 2));
    assert_eq!(
        fs::read_to_string(host.at("file")).unwrap(),
        "target\nmore\n"
    );
    assert!(!host.at("doomed").exists());
}

#[test]
fn modes_owners_and_times_reach_the_host() {
    let host = Host::new();
    let run = host.guest(
        r#"
echo x > f; chmod 0640 f; chown 1234:5678 f
touch -m -d '2001-02-03 04:05:06' f; touch -a -d '2002-03-04 05:06:07' f
mkdir pub; chmod 1777 pub
mkdir shared; chown 0:100 shared; chmod 2777 shared
echo "== stat"; stat -c '%a %u %g %X %Y' f; stat -c '%a' pub shared
# A user other than root: creates files as itself, is refused what it may not do.
$fsh runas 1000 1000 - /bin/sh -c 'echo mine > pub/user-file; mkdir shared/sub'
refused 'Permission denied' $fsh runas 1000 1000 - /bin/sh -c 'echo no >> f'
refused 'Operation not permitted' $fsh runas 1000 1000 - /bin/chmod 777 f
refused 'Permission denied' $fsh runas 1000 1000 - /bin/sh -c 'echo no > no-write-here'
# Write access through a supplementary group (as staff to /usr/local, mail to /var/mail).
mkdir staff; chown 0:50 staff; chmod 2775 staff
$fsh runas 1000 1000 50 /bin/sh -c 'echo note > staff/note; mkdir staff/dir; ln -s note staff/link'
refused 'Permission denied' $fsh runas 1001 1001 - /bin/sh -c 'echo no > staff/other'
"#,
    );
    assert_ran(&run);
    assert_eq!(
        section(&run, "== stat"),
        ["640 1234 5678 1015218367 981173106", "1777", "2777"]
    );

    let f = fs::metadata(host.at("f")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o640);
    assert_eq!((f.uid(), f.gid()), (1234, 5678));
    assert_eq!(f.mtime(), 981_173_106, "2001-02-03 04:05:06 UTC");
    assert_eq!(f.atime(), 1_015_218_367, "2002-03-04 05:06:07 UTC");
    assert_eq!(fs::read_to_string(host.at("f")).unwrap(), "x\n");
    assert_eq!(mode(&host.at("pub")), 0o1777, "the sticky bit is kept");
    assert_eq!(mode(&host.at("shared")), 0o2777);
    let mine = fs::metadata(host.at("pub/user-file")).unwrap();
    assert_eq!((mine.uid(), mine.gid()), (1000, 1000));
    let sub = fs::metadata(host.at("shared/sub")).unwrap();
    assert_eq!(
        (sub.uid(), sub.gid()),
        (1000, 100),
        "a setgid directory passes its group on"
    );
    assert!(!host.at("no-write-here").exists());
    for name in ["note", "dir", "link"] {
        let meta = fs::symlink_metadata(host.at(&format!("staff/{name}"))).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 50), "staff/{name}");
    }
    assert!(!host.at("staff/other").exists());
}

#[test]
fn extended_attributes_are_the_hosts() {
    let host = Host::new();
    fs::write(host.at("f"), "x").unwrap();
    fs::create_dir(host.at("d")).unwrap();
    set_xattr(&host.at("f"), "user.from-host", b"host value");
    let run = host.guest(
        r#"
echo "== host's"; $fsh getxattr f user.from-host
$fsh setxattr f user.from-guest 'guest value'
$fsh setxattr d user.on-dir 'dir value'
echo "== listed"; $fsh listxattr f | sort
$fsh removexattr f user.from-host
refused 'No data available' $fsh getxattr f user.from-host
refused 'No data available' $fsh removexattr f user.never
# Privileges are not for the guest: trusted.* needs CAP_SYS_ADMIN on the host, file
# capabilities are refused by the share's policy.
refused 'Operation not permitted' $fsh setxattr f trusted.x value
refused 'Operation not permitted' $fsh setcap f
echo "== after"; $fsh listxattr f
"#,
    );
    assert_ran(&run);
    assert_eq!(section(&run, "== host's"), ["host value"]);
    assert_eq!(
        section(&run, "== listed"),
        ["user.from-guest", "user.from-host"]
    );
    assert_eq!(section(&run, "== after"), ["user.from-guest"]);
    assert_eq!(
        xattrs(&host.at("f")),
        [("user.from-guest".to_owned(), b"guest value".to_vec())]
    );
    assert_eq!(
        get_xattr(&host.at("d"), "user.on-dir").as_deref(),
        Some(&b"dir value"[..])
    );
}

#[test]
fn sparse_files_beyond_four_gib_stay_sparse() {
    let host = Host::new();
    let run = host.guest(
        r#"
truncate -s 3G sparse
# A marker past 4 GiB: 64-bit offsets all the way.
printf END | dd of=marked bs=1 seek=$((5 * 1024 * 1024 * 1024)) conv=notrunc 2>/dev/null
echo "== sizes"; stat -c '%s' sparse marked
echo "== marker"; dd if=marked bs=1 skip=$((5 * 1024 * 1024 * 1024)) count=3 2>/dev/null; echo
echo "== hole"; dd if=marked bs=1M skip=3000 count=1 2>/dev/null | sha256sum
dd if=/dev/zero bs=1M count=1 2>/dev/null | sha256sum
"#,
    );
    assert_ran(&run);
    assert_eq!(
        section(&run, "== sizes"),
        [(3 * GIB).to_string(), (5 * GIB + 3).to_string()]
    );
    assert_eq!(section(&run, "== marker"), ["END"]);
    let hole = section(&run, "== hole");
    assert_eq!(hole.len(), 2);
    assert_eq!(hole[0], hole[1], "a hole reads as zeros");

    for (name, size) in [("sparse", 3 * GIB), ("marked", 5 * GIB + 3)] {
        let meta = fs::metadata(host.at(name)).unwrap();
        assert_eq!(meta.len(), size, "{name}");
        assert!(
            meta.blocks() * 512 <= MIB,
            "{name} is not sparse on the host: {} blocks",
            meta.blocks()
        );
    }
    let file = fs::File::open(host.at("marked")).unwrap();
    let mut end = [0u8; 3];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut end, 5 * GIB).unwrap();
    assert_eq!(&end, b"END");
}

#[test]
fn a_dense_256_mib_file_has_the_same_sha256_in_the_guest_and_on_the_host() {
    let host = Host::new();
    let started = Instant::now();
    let run = host.guest(
        r#"
dd if=/dev/urandom of=dense bs=1M count=256 2>/dev/null
# Read it back from the host, not from the guest's page cache.
sync; echo 3 > /proc/sys/vm/drop_caches
echo "== sha256"; sha256sum dense
"#,
    );
    assert_ran(&run);
    eprintln!("256 MiB written and read back in {:?}", started.elapsed());
    let guest = section(&run, "== sha256");
    assert_eq!(guest.len(), 1);
    assert_eq!(fs::metadata(host.at("dense")).unwrap().len(), 256 * MIB);
    assert_eq!(
        guest[0],
        format!("{}  dense", host_sha256(&host.at("dense")))
    );
}

#[test]
fn mmap_reads_and_writes_the_hosts_file() {
    let host = Host::new();
    let data = pseudo_random(usize::try_from(8 * MIB).unwrap() + 123);
    fs::write(host.at("data"), &data).unwrap();
    let sha = format!("{}  -", host_sha256(&host.at("data")));
    let run = host.guest(
        r#"
echo "== mapped"; $fsh mmapcat data | sha256sum
echo "== read"; sha256sum < data
$fsh mmapwrite data 4096 'written through a shared mapping'
"#,
    );
    assert_ran(&run);
    assert_eq!(section(&run, "== mapped"), [sha.as_str()]);
    assert_eq!(section(&run, "== read"), [sha.as_str()]);
    let after = fs::read(host.at("data")).unwrap();
    let text = b"written through a shared mapping";
    assert_eq!(&after[4096..4096 + text.len()], text);
    assert_eq!(after.len(), data.len());
    assert_eq!(after[..4096], data[..4096]);
    assert_eq!(after[4096 + text.len()..], data[4096 + text.len()..]);
}

#[test]
fn ten_thousand_files_in_one_directory() {
    let host = Host::new();
    let run = host.guest(
        r#"
mkdir many; cd many
seq 1 10000 | sed 's/^/file-/' | xargs touch
echo "== counted"; ls | wc -l; find . -type f | wc -l
"#,
    );
    assert_ran(&run);
    assert_eq!(section(&run, "== counted"), ["10000", "10000"]);
    let mut names: Vec<String> = fs::read_dir(host.at("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (1..=10_000).map(|i| format!("file-{i}")).collect();
    expected.sort();
    assert_eq!(names, expected);
}

/// The first entries of `/usr/share/doc`, in name order, that hold at least `files` files:
/// a real tree (text, compressed files, symlinks, nested directories) of this host.
fn doc_subset(files: usize) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/usr/share/doc")
        .expect("/usr/share/doc")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut chosen = Vec::new();
    let mut count = 0;
    for name in names {
        count += snapshot(&Path::new("/usr/share/doc").join(&name), &[]).len() + 1;
        chosen.push(name);
        if count >= files {
            break;
        }
    }
    assert!(count >= files, "/usr/share/doc has only {count} entries");
    chosen
}

/// `diff -r --no-dereference` of `/usr/share/doc/NAME` and `DIR/NAME` for each name, plus
/// the modes and modification times of regular files (which tar keeps).
fn assert_same_tree(names: &[String], dir: &Path) {
    for name in names {
        let original = Path::new("/usr/share/doc").join(name);
        let copy = dir.join(name);
        let diff = Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&original)
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            diff.status.success(),
            "{} differs from {}:\n{}{}",
            copy.display(),
            original.display(),
            String::from_utf8_lossy(&diff.stdout),
            String::from_utf8_lossy(&diff.stderr)
        );
        let files = |root: &Path| -> BTreeMap<PathBuf, (u32, i64)> {
            let mut out = BTreeMap::new();
            let mut todo = vec![root.to_owned()];
            while let Some(dir) = todo.pop() {
                if !fs::symlink_metadata(&dir).unwrap().is_dir() {
                    continue;
                }
                for entry in fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    let meta = fs::symlink_metadata(&path).unwrap();
                    if meta.is_dir() {
                        todo.push(path);
                    } else if meta.is_file() {
                        let rel = path.strip_prefix(root).unwrap().to_owned();
                        out.insert(rel, (meta.mode() & 0o7777, meta.mtime()));
                    }
                }
            }
            out
        };
        assert_eq!(files(&original), files(&copy), "modes and times of {name}");
    }
}

#[test]
fn tar_extracts_and_creates_a_real_tree() {
    let host = Host::new();
    let names = doc_subset(1000);
    let mut tar = Command::new("tar");
    tar.arg("-cf")
        .arg(host.at("in.tar"))
        .args(["-C", "/usr/share/doc"])
        .args(&names);
    assert!(tar.status().unwrap().success());
    let started = Instant::now();
    let run = host.guest(
        r#"
mkdir x
tar -xf in.tar -C x
tar -cf out.tar -C x .
echo "== entries"; find x | wc -l
"#,
    );
    assert_ran(&run);
    eprintln!("tar x + tar c in the guest: {:?}", started.elapsed());

    // tar x in the guest, compared on the host.
    assert_same_tree(&names, &host.at("x"));
    // tar c in the guest, extracted on the host.
    let back = host.root().join("back");
    fs::create_dir(&back).unwrap();
    let mut untar = Command::new("tar");
    untar
        .arg("-xf")
        .arg(host.at("out.tar"))
        .arg("-C")
        .arg(&back);
    assert!(untar.status().unwrap().success());
    assert_same_tree(&names, &back);
    let entries: usize = section(&run, "== entries")[0].parse().unwrap();
    assert_eq!(entries, snapshot(&host.at("x"), &[]).len() + 1);
}

#[test]
fn concurrent_writers_and_appenders() {
    const WRITERS: usize = 4;
    const LINES: usize = 400;
    let host = Host::new();
    let run = host.guest_with(
        &[],
        &["--cpus", "2"],
        &format!(
            r#"
for w in $(seq 1 {WRITERS}); do
    ( $fsh append log w$w {LINES}; seq 1 20000 | sed "s/^/w$w /" > own$w ) &
done
wait
echo "== lines"; wc -l < log
"#
        ),
    );
    assert_ran(&run);
    assert_eq!(section(&run, "== lines"), [(WRITERS * LINES).to_string()]);
    let log = fs::read_to_string(host.at("log")).unwrap();
    let mut seen: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for line in log.lines() {
        let (writer, n) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("a torn line in the log: {line:?}"));
        seen.entry(writer)
            .or_default()
            .push(n.parse().unwrap_or_else(|_| panic!("torn line {line:?}")));
    }
    assert_eq!(seen.len(), WRITERS);
    for (writer, numbers) in seen {
        assert_eq!(
            numbers,
            (1..=LINES).collect::<Vec<_>>(),
            "{writer}'s lines, in its order"
        );
    }
    for w in 1..=WRITERS {
        let own = fs::read_to_string(host.at(&format!("own{w}"))).unwrap();
        let expected: String = (1..=20_000).map(|i| format!("w{w} {i}\n")).collect();
        assert!(own == expected, "own{w} differs ({} bytes)", own.len());
    }
}

// ---------------------------------------------------------------------------------------
// Escapes: each asserts the error in the guest and that nothing outside the share changed.

#[test]
fn dot_dot_from_the_share_root_is_the_guests_mnt() {
    let host = Host::new();
    fs::create_dir(host.at("sub")).unwrap();
    let before = host.outside_the_share();
    let run = host.guest(
        r#"
echo "== parent"; ls -a /mnt/t/..
[ "$(stat -c '%d %i' /mnt/t/..)" = "$(stat -c '%d %i' /mnt)" ]
[ "$(stat -c '%d %i' /mnt/t/sub/../..)" = "$(stat -c '%d %i' /mnt)" ]
cd /mnt/t/..; echo "== pwd"; pwd; cd /mnt/t/sub
refused 'No such file or directory' cat /mnt/t/../outside/secret
refused 'No such file or directory' cat ../../outside/secret
refused 'No such file or directory' cat /mnt/t/../../outside/secret
refused 'No such file or directory' ls /mnt/t/../outside
# busybox sh's words for ENOENT on a create.
refused 'nonexistent directory' sh -c 'echo owned > /mnt/t/../outside/secret'
"#,
    );
    assert_ran(&run);
    assert_eq!(section(&run, "== parent"), [".", "..", "t", "tools"]);
    assert_eq!(section(&run, "== pwd"), ["/mnt"]);
    assert_refused(
        &run,
        "cat /mnt/t/../outside/secret",
        "No such file or directory",
    );
    assert_eq!(host.outside_the_share(), before);
    assert_eq!(fs::read_to_string(host.secret()).unwrap(), SECRET);
}

#[test]
fn symlinks_planted_by_the_host_resolve_in_the_guest_never_on_the_host() {
    let host = Host::new();
    let secret = host.secret();
    let outside = host.root().join("outside");
    std::os::unix::fs::symlink(&secret, host.at("abs")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", host.at("rel")).unwrap();
    std::os::unix::fs::symlink(&outside, host.at("abs-dir")).unwrap();
    std::os::unix::fs::symlink("../outside", host.at("rel-dir")).unwrap();
    let before = host.outside_the_share();
    let run = host.guest(&format!(
        r#"
echo "== readlink"; readlink abs; readlink rel
refused 'No such file or directory' cat abs
refused 'No such file or directory' cat rel
refused 'No such file or directory' ls abs-dir/
refused 'No such file or directory' ls rel-dir/
# busybox sh's words for ENOENT on a create.
refused 'nonexistent directory' sh -c 'echo owned > abs'
refused 'nonexistent directory' sh -c 'echo owned > rel-dir/new'
refused 'nonexistent directory' sh -c 'echo owned > abs-dir/secret'
# The guest resolves them in its own tree: give it what they name.
mkdir -p /mnt/outside {outside}
echo guest-rel > /mnt/outside/secret; echo guest-abs > {secret}
echo "== followed"; cat rel abs
"#,
        outside = outside.display(),
        secret = secret.display(),
    ));
    assert_ran(&run);
    assert_eq!(
        section(&run, "== readlink"),
        [secret.to_str().unwrap(), "../outside/secret"]
    );
    assert_eq!(section(&run, "== followed"), ["guest-rel", "guest-abs"]);
    assert_refused(&run, "cat abs", "No such file or directory");
    assert_eq!(host.outside_the_share(), before);
    assert_eq!(fs::read_to_string(&secret).unwrap(), SECRET);
}

#[test]
fn hard_links_never_reach_outside_the_share() {
    let host = Host::new();
    // The host's own decision: a hard link inside the share to a file outside is served
    // like any file of the share.
    fs::hard_link(host.secret(), host.at("planted")).unwrap();
    std::os::unix::fs::symlink(host.secret(), host.at("abs")).unwrap();
    let before = host.outside_the_share();
    let run = host.guest(
        r#"
echo "== planted"; cat planted
# Nothing outside can be named: other mounts are other devices to the guest's kernel, and
# a symlink out is resolved in the guest.
refused 'Invalid cross-device link' ln /mnt/tools/fsh tool-link
refused 'Invalid cross-device link' $fsh link /mnt/tools/fsh tool-link
refused 'Invalid cross-device link' $fsh link /init init-link
refused 'No such file or directory' $fsh linkfollow abs followed
# A hard link to the symlink itself is just another name for the symlink.
$fsh link abs abs-link
echo "== abs-link"; readlink abs-link
"#,
    );
    assert_ran(&run);
    assert_eq!(section(&run, "== planted"), [SECRET.trim_end()]);
    assert_eq!(
        section(&run, "== abs-link"),
        [host.secret().to_str().unwrap()]
    );
    assert_eq!(host.outside_the_share(), before);
    let link = fs::symlink_metadata(host.at("abs-link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        link.ino(),
        fs::symlink_metadata(host.at("abs")).unwrap().ino()
    );
    assert!(!host.at("tool-link").exists() && !host.at("followed").exists());
    assert_eq!(
        fs::metadata(host.secret()).unwrap().nlink(),
        2,
        "the secret and the planted link"
    );
}

#[test]
fn renames_and_links_across_two_shares_fail_with_exdev() {
    let host = Host::new();
    let other = host.root().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("theirs"), "other share\n").unwrap();
    let before = snapshot(host.root(), &["share"]);
    let run = host.guest_with(
        &[format!("u={}", other.display())],
        &[],
        r#"
echo mine > mine
refused 'Invalid cross-device link' $fsh rename /mnt/t/mine /mnt/u/mine
refused 'Invalid cross-device link' $fsh rename /mnt/u/theirs /mnt/t/theirs
refused 'Invalid cross-device link' $fsh link /mnt/t/mine /mnt/u/mine
refused 'Invalid cross-device link' $fsh link /mnt/u/theirs /mnt/t/theirs
refused 'Invalid cross-device link' $fsh rename /mnt/t/mine /mnt/tools/mine
"#,
    );
    assert_ran(&run);
    assert_refused(
        &run,
        "/mnt/tools/fsh rename /mnt/t/mine /mnt/u/mine",
        "Invalid cross-device link",
    );
    assert_eq!(snapshot(host.root(), &["share"]), before);
    assert_eq!(fs::read_to_string(host.at("mine")).unwrap(), "mine\n");
    assert!(!host.at("theirs").exists());
}

#[test]
fn device_nodes_are_refused_and_host_planted_ones_cannot_be_opened() {
    let host = Host::new();
    let null = c_path(&host.at("planted-null"));
    // SAFETY: a valid C string; mknod touches no memory of ours.
    let rc = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    let before = host.outside_the_share();
    let run = host.guest(
        r#"
refused 'Operation not permitted' mknod null c 1 3
refused 'Operation not permitted' mknod disk b 8 0
refused 'Operation not permitted' mknod zero c 1 5
# The share is mounted nodev in the guest, and the host's sandbox mounts it nodev too.
refused 'Permission denied' cat planted-null
mknod fifo p
echo "== mount"; grep ' /mnt/t ' /proc/mounts | cut -d' ' -f4
"#,
    );
    assert_ran(&run);
    assert_eq!(section(&run, "== mount"), ["rw,nodev,relatime"]);
    for name in ["null", "disk", "zero"] {
        assert!(
            fs::symlink_metadata(host.at(name)).is_err(),
            "{name} exists"
        );
    }
    assert!(fs::symlink_metadata(host.at("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(host.outside_the_share(), before);
}

#[test]
fn setuid_and_setgid_bits_never_reach_the_host() {
    let host = Host::new();
    for (name, mode) in [("planted-suid", 0o4755), ("planted-sgid", 0o2755)] {
        fs::write(host.at(name), "#!/bin/sh\n").unwrap();
        fs::set_permissions(host.at(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = host.outside_the_share();
    let run = host.guest(
        r#"
echo x > u; chmod u+s u
echo x > g; chmod 2755 g
echo x > both; chmod 6777 both
$fsh create created 6755
mkdir -m 6775 dir
echo 'echo changed' >> planted-suid
truncate -s 0 planted-sgid
echo "== guest view"; stat -c '%n %a' u g both created dir planted-suid planted-sgid
"#,
    );
    assert_ran(&run);
    let expected = [
        ("u", 0o644),
        ("g", 0o755),
        ("both", 0o777),
        ("created", 0o755),
        ("dir", 0o2775),
        ("planted-suid", 0o755),
        ("planted-sgid", 0o755),
    ];
    let guest_view: Vec<String> = expected
        .iter()
        .map(|(name, mode)| format!("{name} {mode:o}"))
        .collect();
    assert_eq!(section(&run, "== guest view"), guest_view);
    for (name, expected) in expected {
        assert_eq!(
            format!("{:o}", mode(&host.at(name))),
            format!("{expected:o}"),
            "{name} on the host"
        );
    }
    assert_eq!(host.outside_the_share(), before);
}

// ---------------------------------------------------------------------------------------
// Read-only shares, changes on both sides, bad input.

#[test]
fn a_read_only_share_refuses_every_write_even_remounted_read_write() {
    let host = Host::new();
    let ro = host.root().join("ro");
    fs::create_dir_all(ro.join("dir")).unwrap();
    fs::write(ro.join("keep"), "kept\n").unwrap();
    set_xattr(&ro.join("keep"), "user.kept", b"yes");
    let before = snapshot(host.root(), &["share"]);
    let writes = r#"
    refused 'Read-only file system' sh -c 'echo x > /mnt/ro/new'
    refused 'Read-only file system' sh -c 'echo x >> /mnt/ro/keep'
    refused 'Read-only file system' sh -c ': > /mnt/ro/keep'
    refused 'Read-only file system' truncate -s 0 /mnt/ro/keep
    refused 'Read-only file system' touch /mnt/ro/keep
    refused 'Read-only file system' mkdir /mnt/ro/d
    refused 'Read-only file system' rm /mnt/ro/keep
    refused 'Read-only file system' rmdir /mnt/ro/dir
    refused 'Read-only file system' mv /mnt/ro/keep /mnt/ro/moved
    refused 'Read-only file system' chmod 777 /mnt/ro/keep
    refused 'Read-only file system' chown 1:1 /mnt/ro/keep
    refused 'Read-only file system' ln -s x /mnt/ro/link
    refused 'Read-only file system' ln /mnt/ro/keep /mnt/ro/hard
    refused 'Read-only file system' mknod /mnt/ro/fifo p
    refused 'Read-only file system' $fsh setxattr /mnt/ro/keep user.x y
    refused 'Read-only file system' $fsh removexattr /mnt/ro/keep user.kept
    refused 'Read-only file system' $fsh mmapwrite /mnt/ro/keep 0 X
"#;
    let run = host.guest_with(
        &[format!("ro={}:ro", ro.display())],
        &[],
        &format!(
            r#"
echo "== mount"; grep ' /mnt/ro ' /proc/mounts | cut -d' ' -f4
check() {{
{writes}
}}
check
echo "== remounted"
# The guest's root can lift its own read-only mount; the device still refuses.
mount -o remount,rw /mnt/ro
grep ' /mnt/ro ' /proc/mounts | cut -d' ' -f4
check
echo "== reads"; cat /mnt/ro/keep; $fsh getxattr /mnt/ro/keep user.kept; ls /mnt/ro
"#
        ),
    );
    assert_ran(&run);
    let refusals = writes.lines().filter(|l| !l.trim().is_empty()).count();
    for (marker, mount) in [("== mount", "ro"), ("== remounted", "rw")] {
        let checked = lines_after(&run, marker, true);
        assert_eq!(checked[0], format!("{mount},nodev,relatime"));
        assert_eq!(checked.len(), 1 + refusals, "{checked:?}");
    }
    assert_eq!(section(&run, "== reads"), ["kept", "yes", "dir", "keep"]);
    assert_eq!(snapshot(host.root(), &["share"]), before);
}

/// A VM serving exec sessions with the shares, shut down gracefully on drop.
struct Served<'a> {
    host: &'a Host,
    child: Option<Child>,
    socket: PathBuf,
}

impl<'a> Served<'a> {
    fn start(host: &'a Host) -> Self {
        let socket = host.root().join("vsock.sock");
        let mut args: Vec<String> = ["--mem", MEM, "--serve", "--vsock-socket"]
            .map(str::to_owned)
            .to_vec();
        args.push(socket.to_str().unwrap().to_owned());
        args.extend(host.share_flags(&[]));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = host
            .sandbox
            .vm_command(ENGINE, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let served = Self {
            host,
            child: Some(child),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while served.sh("test -d /mnt/t").code != Some(0) {
            assert!(Instant::now() < deadline, "the VM never served");
            std::thread::sleep(Duration::from_millis(100));
        }
        served
    }

    /// Runs `script` in the guest with `stage1-kvm exec`.
    fn sh(&self, script: &str) -> Finished {
        let mut command = Command::new(stage1_bin());
        command
            .args(["exec", "--vsock-socket"])
            .arg(&self.socket)
            .args(["--", "/bin/sh", "-c", script])
            .stdin(Stdio::null());
        Finished::run(&mut command)
    }

    /// Runs `script` until it prints `expected`; returns how long that took.
    fn wait_for(&self, script: &str, expected: &str) -> Duration {
        let started = Instant::now();
        loop {
            let run = self.sh(script);
            if run.stdout == expected {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{script}: still {:?} / {:?}, expected {expected:?}",
                run.stdout,
                run.stderr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn shutdown(mut self) {
        let child = self.child.take().unwrap();
        send_signal(&child, libc::SIGTERM);
        let end = Finished::from(child.wait_with_output().unwrap());
        assert_eq!(end.code, Some(0), "{}", end.stderr);
        self.host.sandbox.assert_nothing_left();
    }
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn changes_on_either_side_are_seen_by_the_other_while_the_guest_runs() {
    let host = Host::new();
    fs::write(host.at("f"), "version one\n").unwrap();
    let served = Served::start(&host);
    assert_eq!(served.sh("cat /mnt/t/f").stdout, "version one\n");

    // Host → guest: a changed file (longer, then shorter), a new one, a removed one. The
    // guest caches attributes and entries for one second (as virtiofsd's cache=auto).
    fs::write(host.at("f"), "version two, longer\n").unwrap();
    let changed = served.wait_for("cat /mnt/t/f", "version two, longer\n");
    fs::write(host.at("f"), "v3\n").unwrap();
    served.wait_for("cat /mnt/t/f", "v3\n");
    fs::write(host.at("new"), "new on the host\n").unwrap();
    let created = served.wait_for("cat /mnt/t/new 2>&1", "new on the host\n");
    fs::remove_file(host.at("new")).unwrap();
    let removed = served.wait_for("test -e /mnt/t/new || echo gone", "gone\n");
    let mut appended = fs::OpenOptions::new()
        .append(true)
        .open(host.at("f"))
        .unwrap();
    appended.write_all(b"appended by the host\n").unwrap();
    served.wait_for("cat /mnt/t/f", "v3\nappended by the host\n");
    eprintln!(
        "seen in the guest after: change {changed:?}, creation {created:?}, removal {removed:?}"
    );

    // Guest → host: at once, with no cache in between.
    let run = served.sh("echo from the guest > /mnt/t/g; echo more >> /mnt/t/f; mkdir /mnt/t/gd");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        fs::read_to_string(host.at("g")).unwrap(),
        "from the guest\n"
    );
    assert_eq!(
        fs::read_to_string(host.at("f")).unwrap(),
        "v3\nappended by the host\nmore\n"
    );
    assert!(host.at("gd").is_dir());
    served.shutdown();
}

#[test]
fn a_share_that_is_not_a_directory_is_one_error_before_booting() {
    let host = Host::new();
    let socket = host.root().join("vsock.sock");
    fs::write(host.root().join("a-file"), "x").unwrap();
    let missing = host.root().join("missing");
    let file = host.root().join("a-file");
    let share = host.share();
    for (shares, needle) in [
        (
            vec![format!("t={}", missing.display())],
            format!(
                "share directory {}: No such file or directory",
                missing.display()
            ),
        ),
        (
            vec![format!("t={}", file.display())],
            format!("share directory {}: not a directory", file.display()),
        ),
        (
            vec![format!("t={}:ro", missing.display())],
            "No such file or directory".to_owned(),
        ),
        (vec!["t".to_owned()], "expected TAG=HOSTDIR[:ro]".to_owned()),
        (
            vec![format!("={}", share.display())],
            "expected TAG=HOSTDIR[:ro]".to_owned(),
        ),
        (
            vec![format!("{}={}", "x".repeat(37), share.display())],
            "longer than 36 bytes".to_owned(),
        ),
        (
            vec![
                format!("t={}", share.display()),
                format!("t={}", host.root().join("tools").display()),
            ],
            "the tag t is already used by another --share".to_owned(),
        ),
        (
            vec![format!("..={}", share.display())],
            r#"cannot be "." or "..""#.to_owned(),
        ),
        (
            vec![format!(".={}", share.display())],
            r#"cannot be "." or "..""#.to_owned(),
        ),
    ] {
        // --debug: had the VM booted, its console would be on stderr too.
        let mut args = vec![
            "--mem".to_owned(),
            MEM.to_owned(),
            "--debug".to_owned(),
            "--vsock-socket".to_owned(),
            socket.to_str().unwrap().to_owned(),
        ];
        for share in &shares {
            args.extend(["--share".to_owned(), share.clone()]);
        }
        args.extend(["--", "true"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = Finished::run(&mut host.sandbox.vm_command(ENGINE, &args));
        run.assert_one_line_failure(&needle);
        host.sandbox.assert_nothing_left();
        assert!(!socket.exists(), "{shares:?} left the vsock socket behind");
    }
    assert!(!missing.exists());
}
