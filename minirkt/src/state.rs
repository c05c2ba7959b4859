//! Pod states: which state directory holds the pod and whether its lock is held
//! (contract §3.1; rkt `pkg/pod/pods.go` `getPod`/`refreshState`/`State`).

use std::fmt;

/// The state directories under `<datadir>/pods`, in the order rkt searches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// `embryo/`: just created.
    Embryo,
    /// `prepare/`: being prepared (locked) or an aborted prepare (unlocked).
    Prepare,
    /// `prepared/`: prepared, waiting for `run-prepared`.
    Prepared,
    /// `run/`: running (locked) or exited (unlocked).
    Run,
    /// `exited-garbage/`: exited and marked by gc.
    ExitedGarbage,
    /// `garbage/`: never ran, marked by gc.
    Garbage,
}

impl Dir {
    /// All state directories, in rkt's search order.
    pub const ALL: [Dir; 6] = [
        Dir::Embryo,
        Dir::Prepare,
        Dir::Prepared,
        Dir::Run,
        Dir::ExitedGarbage,
        Dir::Garbage,
    ];

    /// rkt's `IncludeMostDirs` (what `list` and UUID resolution look at).
    pub const MOST: [Dir; 4] = [Dir::Prepare, Dir::Prepared, Dir::Run, Dir::ExitedGarbage];

    /// The directory name.
    pub fn name(self) -> &'static str {
        match self {
            Dir::Embryo => "embryo",
            Dir::Prepare => "prepare",
            Dir::Prepared => "prepared",
            Dir::Run => "run",
            Dir::ExitedGarbage => "exited-garbage",
            Dir::Garbage => "garbage",
        }
    }

    /// Whether a lock on pods in this directory means something (rkt tries the shared
    /// lock for every directory except embryo and prepared).
    pub fn lock_is_meaningful(self) -> bool {
        !matches!(self, Dir::Embryo | Dir::Prepared)
    }
}

/// A pod's state, with rkt's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `embryo`.
    Embryo,
    /// `preparing`: in prepare/, locked.
    Preparing,
    /// `aborted prepare`: in prepare/, unlocked.
    AbortedPrepare,
    /// `prepared`.
    Prepared,
    /// `running`: in run/, locked.
    Running,
    /// `exited`: in run/, unlocked.
    Exited,
    /// `exited garbage`: in exited-garbage/, unlocked.
    ExitedGarbage,
    /// `exited deleting`: in exited-garbage/, locked.
    ExitedDeleting,
    /// `garbage`: in garbage/, unlocked.
    Garbage,
    /// `deleting`: in garbage/, locked.
    Deleting,
}

impl State {
    /// The state implied by the directory and whether a shared lock attempt failed.
    pub fn derive(dir: Dir, locked: bool) -> State {
        match (dir, locked) {
            (Dir::Embryo, _) => State::Embryo,
            (Dir::Prepare, true) => State::Preparing,
            (Dir::Prepare, false) => State::AbortedPrepare,
            (Dir::Prepared, _) => State::Prepared,
            (Dir::Run, true) => State::Running,
            (Dir::Run, false) => State::Exited,
            (Dir::ExitedGarbage, true) => State::ExitedDeleting,
            (Dir::ExitedGarbage, false) => State::ExitedGarbage,
            (Dir::Garbage, true) => State::Deleting,
            (Dir::Garbage, false) => State::Garbage,
        }
    }

    /// rkt's `IsAfterRun`.
    pub fn is_after_run(self) -> bool {
        matches!(
            self,
            State::ExitedDeleting
                | State::Deleting
                | State::Exited
                | State::ExitedGarbage
                | State::Garbage
        )
    }

    /// rkt's `isExited` (which covers exited-garbage).
    pub fn is_exited(self) -> bool {
        matches!(
            self,
            State::Exited | State::ExitedGarbage | State::ExitedDeleting
        )
    }

    /// Whether the pod has started (running or any state after it).
    pub fn has_started(self) -> bool {
        self == State::Running || self.is_after_run()
    }

    /// rkt's `PodManifestAvailable`.
    pub fn manifest_available(self) -> bool {
        !matches!(
            self,
            State::Preparing | State::AbortedPrepare | State::Deleting
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Embryo => "embryo",
            State::Preparing => "preparing",
            State::AbortedPrepare => "aborted prepare",
            State::Prepared => "prepared",
            State::Running => "running",
            State::Exited => "exited",
            State::ExitedGarbage => "exited garbage",
            State::ExitedDeleting => "exited deleting",
            State::Garbage => "garbage",
            State::Deleting => "deleting",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_matches_the_contract_table() {
        assert_eq!(State::derive(Dir::Run, true).to_string(), "running");
        assert_eq!(State::derive(Dir::Run, false).to_string(), "exited");
        assert_eq!(
            State::derive(Dir::Prepare, false).to_string(),
            "aborted prepare"
        );
        assert_eq!(
            State::derive(Dir::ExitedGarbage, false).to_string(),
            "exited garbage"
        );
        assert_eq!(
            State::derive(Dir::ExitedGarbage, true).to_string(),
            "exited deleting"
        );
        assert_eq!(State::derive(Dir::Garbage, true).to_string(), "deleting");
        assert!(State::derive(Dir::ExitedGarbage, false).is_exited());
        assert!(!State::derive(Dir::Run, true).is_after_run());
    }
}
