//! Pod directories: creation, state renames, and reading what stage1 leaves in them, the
//! way rkt's `pkg/pod` does (contract §3 and §4).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::error::{Context, Error, Result};
use crate::lock::Lock;
use crate::manifest::{ImageManifest, PodManifest};
use crate::state::{Dir, State};

/// Files in the pod directory (rkt `common/common.go`).
pub mod files {
    /// The pod manifest.
    pub const POD_MANIFEST: &str = "pod";
    /// Lock file for app add/rm.
    pub const POD_LOCK: &str = "pod.lck";
    /// Creation time marker.
    pub const POD_CREATED: &str = "pod-created";
    /// Tree store ID of the stage1 image.
    pub const STAGE1_TREE_STORE_ID: &str = "stage1TreeStoreID";
    /// Overlay marker.
    pub const OVERLAY_PREPARED: &str = "overlay-prepared";
    /// Per-app tree store ID (overlay mode), under `appsinfo/<app>/`.
    pub const APP_TREE_STORE_ID: &str = "treeStoreID";
    /// Networks written by stage1.
    pub const NET_INFO: &str = "net-info.json";
}

/// `<datadir>/pods`: the state directories.
#[derive(Debug, Clone)]
pub struct Pods {
    root: PathBuf,
}

impl Pods {
    /// Opens `<data_dir>/pods`, creating every state directory with mode 0750
    /// (rkt `initPods`).
    pub fn open(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("pods");
        for d in Dir::ALL {
            let p = root.join(d.name());
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&p)
                .ctx("creating directory", &p)?;
        }
        Ok(Pods { root })
    }

    /// `<datadir>/pods/<dir>`.
    pub fn dir(&self, d: Dir) -> PathBuf {
        self.root.join(d.name())
    }

    /// UUIDs found in the given state directories, sorted and deduplicated.
    pub fn list(&self, dirs: &[Dir]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for &d in dirs {
            let path = self.dir(d);
            let entries = match fs::read_dir(&path) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("cannot read pods directory", &path, e)),
            };
            for entry in entries {
                let entry = entry.ctx("reading directory", &path)?;
                if entry.file_type().ctx("inspecting", entry.path())?.is_dir() {
                    out.push(entry.file_name().to_string_lossy().into_owned());
                } else {
                    eprintln!(
                        "unrecognized entry: {:?}, ignoring",
                        entry.file_name().to_string_lossy()
                    );
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Resolves a full UUID or an unambiguous prefix (rkt `resolveUUID`).
    pub fn resolve_uuid(&self, prefix: &str) -> Result<String> {
        if prefix.is_empty() {
            return Err(Error::Usage("UUID cannot be empty".into()));
        }
        let prefix = prefix.to_lowercase();
        let matches: Vec<String> = self
            .list(&Dir::MOST)?
            .into_iter()
            .filter(|u| u.starts_with(&prefix))
            .collect();
        match matches.len() {
            0 => Err(Error::Other(format!("no matches found for {prefix:?}"))),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            n => Err(Error::Other(format!("ambiguous uuid, {n} matches"))),
        }
    }
}

/// One network of `net-info.json` (rkt `networking/netinfo`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetInfo {
    /// Network name.
    #[serde(default)]
    pub net_name: String,
    /// Configuration file.
    #[serde(default, rename = "netConf")]
    pub conf_path: String,
    /// Plugin path.
    #[serde(default)]
    pub plugin_path: String,
    /// Interface name.
    #[serde(default)]
    pub if_name: String,
    /// Pod IP.
    #[serde(default)]
    pub ip: Option<String>,
    /// CNI_ARGS.
    #[serde(default)]
    pub args: String,
    /// Netmask.
    #[serde(default)]
    pub mask: Option<String>,
}

impl NetInfo {
    /// The IP as Go prints a `net.IP` (`<nil>` when absent).
    pub fn ip_display(&self) -> String {
        match self.ip.as_deref() {
            None | Some("") => "<nil>".into(),
            Some(ip) => ip.to_string(),
        }
    }
}

/// Parses `net-info.json` as rkt does (one JSON value; `net.IP` strings must be valid).
/// A present but invalid file is an error (contract fact 12).
pub fn parse_net_info(bytes: &[u8]) -> std::result::Result<Vec<NetInfo>, String> {
    let mut stream =
        serde_json::Deserializer::from_slice(bytes).into_iter::<Option<Vec<NetInfo>>>();
    let nets = match stream.next() {
        None => return Err("EOF".into()),
        Some(r) => r.map_err(|e| e.to_string())?.unwrap_or_default(),
    };
    for n in &nets {
        for ip in [&n.ip, &n.mask].into_iter().flatten() {
            if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("invalid IP address: {ip}"));
            }
        }
    }
    Ok(nets)
}

/// A pod: its UUID, where it is, its (cached) state, and its open directory lock.
#[derive(Debug)]
pub struct Pod {
    /// The pod UUID.
    pub uuid: String,
    pods: Pods,
    dir: Dir,
    state: State,
    lock: Lock,
    /// Networks from `net-info.json` (running and exited pods).
    pub nets: Vec<NetInfo>,
}

/// A fresh random UUID (rkt uses `uuid.New()`, a v4 UUID).
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn fsync_dir(path: &Path) -> Result<()> {
    let d = fs::File::open(path).ctx("opening", path)?;
    d.sync_all().ctx("syncing", path)
}

impl Pod {
    /// rkt `NewPod`: creates `embryo/<uuid>` (0750), opens its lock, locks it exclusively,
    /// renames it to `prepare/<uuid>` and syncs the directory. The pod is left locked in
    /// state `preparing`.
    pub fn create(pods: &Pods) -> Result<Pod> {
        let uuid = new_uuid();
        let embryo = pods.dir(Dir::Embryo).join(&uuid);
        fs::DirBuilder::new()
            .mode(0o750)
            .create(&embryo)
            .ctx("creating pod directory", &embryo)?;
        let lock = match Lock::open_dir(&embryo) {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir(&embryo);
                return Err(e);
            }
        };
        let mut pod = Pod {
            uuid,
            pods: pods.clone(),
            dir: Dir::Embryo,
            state: State::Embryo,
            lock,
            nets: Vec::new(),
        };
        pod.lock.exclusive()?;
        pod.rename_to(Dir::Prepare)?;
        pod.state = State::Preparing;
        Ok(pod)
    }

    /// rkt `getPod`: finds the pod's directory, opens its lock, and derives its state by
    /// trying a non-blocking shared lock (released at once). Running and exited pods get
    /// their networks loaded; an invalid `net-info.json` is an error.
    pub fn load(pods: &Pods, uuid: &str) -> Result<Pod> {
        for d in Dir::ALL {
            let path = pods.dir(d).join(uuid);
            let lock = match Lock::open_dir(&path) {
                Ok(l) => l,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(Error::Other(format!("error opening pod {uuid:?}: {e}"))),
            };
            let locked = d.lock_is_meaningful() && !lock.try_shared()?;
            if d.lock_is_meaningful() && !locked {
                lock.unlock()?;
            }
            let mut pod = Pod {
                uuid: uuid.to_string(),
                pods: pods.clone(),
                dir: d,
                state: State::derive(d, locked),
                lock,
                nets: Vec::new(),
            };
            if pod.state == State::Running || pod.state.is_exited() {
                pod.nets = pod.load_nets()?;
            }
            return Ok(pod);
        }
        Err(Error::Other(format!("pod {uuid:?} was not present")))
    }

    fn load_nets(&self) -> Result<Vec<NetInfo>> {
        let path = self.path().join(files::NET_INFO);
        match fs::read(&path) {
            Ok(bytes) => parse_net_info(&bytes).map_err(|e| {
                Error::Other(format!(
                    "error opening pod {} netinfo: {}: {e}",
                    self.uuid,
                    path.display()
                ))
            }),
            // ENOENT is fine: no networks (rkt: "assume running with --net=host").
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// rkt `refreshState`: re-derives the state from the directories and the lock.
    pub fn refresh_state(&mut self) -> Result<()> {
        for d in Dir::ALL {
            let path = self.pods.dir(d).join(&self.uuid);
            match fs::metadata(&path) {
                Ok(_) => {
                    self.dir = d;
                    let locked = d.lock_is_meaningful() && !self.lock.try_shared()?;
                    if d.lock_is_meaningful() && !locked {
                        self.lock.unlock()?;
                    }
                    self.state = State::derive(d, locked);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("error refreshing state of pod", &path, e)),
            }
        }
        Err(Error::Other(format!("pod {:?} is gone", self.uuid)))
    }

    /// The pod's current state (as of the last load/refresh/transition).
    pub fn state(&self) -> State {
        self.state
    }

    /// The state directory holding the pod.
    pub fn dir(&self) -> Dir {
        self.dir
    }

    /// `$pod`: `<datadir>/pods/<dir>/<uuid>`.
    pub fn path(&self) -> PathBuf {
        self.pods.dir(self.dir).join(&self.uuid)
    }

    /// The pod directory lock (its fd is `RKT_LOCK_FD` for `run`).
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    fn rename_to(&mut self, to: Dir) -> Result<()> {
        let from = self.path();
        let dest = self.pods.dir(to).join(&self.uuid);
        fs::rename(&from, &dest).ctx("renaming pod directory", &from)?;
        fsync_dir(&self.pods.dir(to))?;
        self.dir = to;
        Ok(())
    }

    /// rkt `ToPrepared`: prepare/ → prepared/, then unlock.
    pub fn to_prepared(&mut self) -> Result<()> {
        self.rename_to(Dir::Prepared)?;
        self.lock.unlock()?;
        self.state = State::Prepared;
        Ok(())
    }

    /// rkt `ToRun`: exclusive lock (waiting for it), then → run/. The lock stays held.
    pub fn to_run(&mut self) -> Result<()> {
        if !matches!(self.state, State::Prepared | State::Preparing) {
            return Err(Error::Other(format!(
                "bug: only prepared or preparing pods may transition to run (pod {} is {})",
                self.uuid, self.state
            )));
        }
        self.lock.exclusive()?;
        self.rename_to(Dir::Run)?;
        self.state = State::Running;
        Ok(())
    }

    /// rkt `ToExitedGarbage`: run/ → exited-garbage/ (the rename's ctime starts the grace
    /// period, contract §3.1).
    pub fn to_exited_garbage(&mut self) -> Result<()> {
        if self.state != State::Exited {
            return Err(Error::Other(format!(
                "bug: only exited non-garbage pods may transition to exited-garbage (pod {} is {})",
                self.uuid, self.state
            )));
        }
        self.rename_to(Dir::ExitedGarbage)?;
        self.state = State::ExitedGarbage;
        Ok(())
    }

    /// rkt `ToGarbage`: aborted prepare or prepared → garbage/.
    pub fn to_garbage(&mut self) -> Result<()> {
        if !matches!(self.state, State::AbortedPrepare | State::Prepared) {
            return Err(Error::Other(format!(
                "bug: only failed prepare or prepared pods may transition to garbage (pod {} is {})",
                self.uuid, self.state
            )));
        }
        self.rename_to(Dir::Garbage)?;
        self.state = State::Garbage;
        Ok(())
    }

    /// Takes the pod lock exclusively (waiting), as gc and rm do before deleting. Like
    /// rkt, the cached state is not refreshed.
    pub fn lock_for_delete(&mut self) -> Result<()> {
        self.lock.exclusive()
    }

    fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.path().join(name);
        fs::read(&p).ctx("reading", &p)
    }

    /// Go's `fmt.Sscanf("%d")` on a file of the pod: leading spaces, optional sign,
    /// digits; anything after is ignored.
    fn read_int(&self, name: &str) -> Result<i64> {
        let bytes = self.read_file(name)?;
        parse_leading_int(&bytes).ok_or_else(|| {
            Error::Other(format!(
                "{}: expected an integer",
                self.path().join(name).display()
            ))
        })
    }

    /// The pod manifest (`$pod/pod`).
    pub fn manifest(&self) -> Result<PodManifest> {
        let bytes = self
            .read_file(files::POD_MANIFEST)
            .map_err(|e| Error::Other(format!("error reading pod manifest: {e}")))?;
        PodManifest::parse(&bytes).map_err(|reason| Error::Manifest {
            kind: "pod manifest",
            path: self.path().join(files::POD_MANIFEST),
            reason,
        })
    }

    /// An app's image manifest (`appsinfo/<app>/manifest`).
    pub fn app_image_manifest(&self, app: &str) -> Result<ImageManifest> {
        let p = self.path().join("appsinfo").join(app).join("manifest");
        let bytes = fs::read(&p).ctx("reading", &p)?;
        ImageManifest::parse(&bytes).map_err(|reason| Error::Manifest {
            kind: "image manifest",
            path: p,
            reason,
        })
    }

    /// Whether the pod was prepared with overlay (`overlay-prepared` exists).
    pub fn uses_overlay(&self) -> bool {
        self.path().join(files::OVERLAY_PREPARED).exists()
    }

    /// The stage1 tree store ID (`stage1TreeStoreID`).
    pub fn stage1_tree_store_id(&self) -> Result<String> {
        let bytes = self.read_file(files::STAGE1_TREE_STORE_ID)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Where rkt reads the stage1 tree from for status files (rkt `Stage1RootfsPath`):
    /// with overlay the upper dir `overlay/<stage1TreeStoreID>/upper/`, else
    /// `stage1/rootfs` (contract fact 5).
    pub fn stage1_rootfs_for_reading(&self) -> Result<PathBuf> {
        if self.uses_overlay() {
            let id = self.stage1_tree_store_id()?;
            Ok(self.path().join("overlay").join(id).join("upper"))
        } else {
            Ok(self.path().join("stage1/rootfs"))
        }
    }

    /// An app's exit code from `rkt/status/<app>` (rkt `AppExitCode`).
    pub fn app_exit_code(&self, app: &str) -> Result<i64> {
        let path = self
            .stage1_rootfs_for_reading()?
            .join("rkt/status")
            .join(app);
        let bytes = fs::read(&path).ctx("reading", &path)?;
        parse_leading_int(&bytes)
            .ok_or_else(|| Error::Other(format!("{}: expected an integer", path.display())))
    }

    /// rkt `Pid`: the content of `pid`, else the content of `ppid`.
    pub fn pid(&self) -> Result<i64> {
        self.read_int("pid").or_else(|_| self.read_int("ppid"))
    }

    /// rkt `ContainerPid1` (contract §2.2): `pid`, else the only child of `ppid`; retries
    /// every 100 ms while the pod is running.
    pub fn container_pid1(&mut self) -> Result<i64> {
        loop {
            if let Ok(pid) = self.read_int("pid") {
                return Ok(pid);
            }
            match self.read_int("ppid") {
                Ok(ppid) => {
                    if let Some(pid) = child_pid(ppid)? {
                        return Ok(pid);
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            // The window between the rename to run/ and stage1 writing the file.
            sleep(Duration::from_millis(100));
            self.refresh_state()?;
            if self.state != State::Running {
                return Err(Error::Other(format!(
                    "pod {} is not running anymore",
                    self.uuid
                )));
            }
        }
    }

    fn mtime(&self, name: &str) -> Result<Option<SystemTime>> {
        let p = self.path().join(name);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.modified().ctx("reading mtime of", &p)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("inspecting", &p, e)),
        }
    }

    /// rkt `CreationTime`: mtime of `pod-created` (else `pod`) for prepared, running and
    /// later states.
    pub fn creation_time(&self) -> Result<Option<SystemTime>> {
        if !(self.state == State::Prepared || self.state.has_started()) {
            return Ok(None);
        }
        match self.mtime(files::POD_CREATED)? {
            Some(t) => Ok(Some(t)),
            None => self.mtime(files::POD_MANIFEST),
        }
    }

    /// rkt `StartTime`: mtime of `pid`, else of `ppid` (contract fact 4).
    pub fn start_time(&self) -> Result<Option<SystemTime>> {
        if !self.state.has_started() {
            return Ok(None);
        }
        match self.mtime("pid")? {
            Some(t) => Ok(Some(t)),
            None => self.mtime("ppid"),
        }
    }

    /// The change time of the pod directory (gc grace periods and prepared expiry are
    /// measured from it, contract §3.1).
    pub fn ctime(&self) -> Result<SystemTime> {
        let p = self.path();
        let m = fs::symlink_metadata(&p).ctx("inspecting", &p)?;
        let secs = u64::try_from(m.ctime()).unwrap_or(0);
        let nanos = u32::try_from(m.ctime_nsec()).unwrap_or(0);
        Ok(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
    }
}

/// Go `Sscanf("%d")`.
pub fn parse_leading_int(bytes: &[u8]) -> Option<i64> {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let n: i64 = digits[..end].parse().ok()?;
    Some(if neg { -n } else { n })
}

/// rkt `getChildPID`: the only child of `ppid` from `/proc/<ppid>/task/<ppid>/children`;
/// `None` while there is none yet, an error if there are several.
fn child_pid(ppid: i64) -> Result<Option<i64>> {
    let path = PathBuf::from(format!("/proc/{ppid}/task/{ppid}/children"));
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => return Ok(None),
    };
    let children: Vec<&str> = text.split_whitespace().collect();
    match children.as_slice() {
        [] => Ok(None),
        [one] => Ok(one.parse().ok()),
        _ => Err(Error::Other(format!("too many children of pid {ppid}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_like_sscanf() {
        assert_eq!(parse_leading_int(b"42\n"), Some(42));
        assert_eq!(parse_leading_int(b"  -3 x"), Some(-3));
        assert_eq!(parse_leading_int(b""), None);
        assert_eq!(parse_leading_int(b"x1"), None);
    }

    #[test]
    fn net_info_like_go() {
        let nets = parse_net_info(
            br#"[{"netName":"default","netConf":"/x","pluginPath":"/p","ifName":"eth0","ip":"172.16.28.2","args":"","mask":"255.255.255.0"}]"#,
        )
        .unwrap();
        assert_eq!(nets[0].ip_display(), "172.16.28.2");
        assert!(parse_net_info(b"").is_err());
        assert!(parse_net_info(b"[{\"ip\":\"nope\"}]").is_err());
        assert!(parse_net_info(b"null").unwrap().is_empty());
    }
}
