//! What both connection kinds say about a process: how to start it ([`ProcessSpec`]), how it
//! ended ([`ExitStatus`]), its terminal size ([`WindowSize`]), and the rules these obey.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Largest signal number on Linux (`SIGRTMAX`).
pub const MAX_SIGNAL: i32 = 64;

/// How to start a process in the guest.
///
/// On the wire:
/// `{"argv":["/bin/sh","-c","echo hi"],"env":[["PATH","/bin"]],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Program and arguments; `argv[0]` is resolved by the agent as rkt does (absolute
    /// path, path relative to `cwd`, or a name searched in the `PATH` of `env`).
    pub argv: Vec<String>,
    /// The complete environment, in order, as `[name, value]` pairs (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory, an absolute path inside the process's root.
    pub cwd: String,
    /// User id the process runs as.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (may be empty).
    pub supplementary_gids: Vec<u32>,
}

/// `Err(NulByte)` naming `field` if `value` contains NUL.
fn no_nul(value: &str, field: impl FnOnce() -> String) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(ValidationError::NulByte { field: field() });
    }
    Ok(())
}

impl ProcessSpec {
    /// Checks the rules a process must follow: non-empty argv and program, no NUL in any
    /// string (each becomes a C string), environment names non-empty without `=`, an
    /// absolute `cwd`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let program = self.argv.first().ok_or(ValidationError::EmptyArgv)?;
        if program.is_empty() {
            return Err(ValidationError::EmptyProgram);
        }
        for (i, arg) in self.argv.iter().enumerate() {
            no_nul(arg, || format!("process.argv[{i}]"))?;
        }
        for (i, (name, value)) in self.env.iter().enumerate() {
            no_nul(name, || format!("process.env[{i}] (name)"))?;
            no_nul(value, || format!("process.env[{i}] ({name})"))?;
            if name.is_empty() || name.contains('=') {
                return Err(ValidationError::InvalidEnvName { name: name.clone() });
            }
        }
        no_nul(&self.cwd, || "process.cwd".to_owned())?;
        if !self.cwd.starts_with('/') {
            return Err(ValidationError::RelativeCwd {
                cwd: self.cwd.clone(),
            });
        }
        Ok(())
    }
}

/// Checks that `name` is an appc AC name (`^[a-z0-9]+(-[a-z0-9]+)*$`), as app names in a
/// pod manifest are. Such a name is also safe as a path component (`/opt/stage2/<name>`).
pub fn validate_app_name(name: &str) -> Result<(), ValidationError> {
    let word_ok = |word: &str| {
        !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if name.split('-').all(word_ok) {
        Ok(())
    } else {
        Err(ValidationError::InvalidAppName {
            name: name.to_owned(),
        })
    }
}

/// How a process ended: it exited with a code, or a signal killed it.
///
/// On the wire: `{"code":0}` or `{"signal":9}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Exited with this code (`0..=255`).
    Code(i32),
    /// Killed by this signal (`1..=64`).
    Signal(i32),
}

impl ExitStatus {
    /// The exit code a shell (and rkt) reports: the code itself, or 128 + the signal.
    pub fn to_exit_code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(signal) => signal.saturating_add(128),
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }

    /// Checks the ranges: code `0..=255`, signal `1..=64`.
    pub fn validate(self) -> Result<(), ValidationError> {
        match self {
            Self::Code(code) if !(0..=255).contains(&code) => {
                Err(ValidationError::ExitCodeOutOfRange { code })
            }
            Self::Signal(signal) => validate_signal(signal),
            Self::Code(_) => Ok(()),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exited with code {code}"),
            Self::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// Checks a signal number is in `1..=64`.
pub fn validate_signal(signal: i32) -> Result<(), ValidationError> {
    if (1..=MAX_SIGNAL).contains(&signal) {
        Ok(())
    } else {
        Err(ValidationError::SignalOutOfRange { signal })
    }
}

/// A terminal's size in character cells.
///
/// On the wire: `{"rows":24,"cols":80}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSize {
    /// Rows, at least 1.
    pub rows: u16,
    /// Columns, at least 1.
    pub cols: u16,
}

impl WindowSize {
    /// Checks both dimensions are at least 1.
    pub fn validate(self) -> Result<(), ValidationError> {
        if self.rows == 0 || self.cols == 0 {
            return Err(ValidationError::InvalidWindowSize {
                rows: self.rows,
                cols: self.cols,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ProcessSpec {
        ProcessSpec {
            argv: vec!["/bin/true".into()],
            env: vec![("PATH".into(), "/bin".into())],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            supplementary_gids: vec![],
        }
    }

    #[test]
    fn exit_status_maps_to_shell_exit_codes() {
        assert_eq!(ExitStatus::Code(0).to_exit_code(), 0);
        assert_eq!(ExitStatus::Code(1).to_exit_code(), 1);
        assert_eq!(ExitStatus::Code(255).to_exit_code(), 255);
        assert_eq!(ExitStatus::Signal(9).to_exit_code(), 137);
        assert_eq!(ExitStatus::Signal(15).to_exit_code(), 143);
        assert_eq!(
            ExitStatus::Signal(i32::MAX).to_exit_code(),
            i32::MAX,
            "saturates"
        );
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Code(1).success());
        assert!(!ExitStatus::Signal(9).success());
        assert_eq!(ExitStatus::Signal(9).to_string(), "killed by signal 9");
        assert_eq!(ExitStatus::Code(3).to_string(), "exited with code 3");
    }

    #[test]
    fn exit_status_ranges() {
        for ok in [
            ExitStatus::Code(0),
            ExitStatus::Code(255),
            ExitStatus::Signal(1),
            ExitStatus::Signal(64),
        ] {
            assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        }
        assert_eq!(
            ExitStatus::Code(256).validate(),
            Err(ValidationError::ExitCodeOutOfRange { code: 256 })
        );
        assert_eq!(
            ExitStatus::Code(-1).validate(),
            Err(ValidationError::ExitCodeOutOfRange { code: -1 })
        );
        assert_eq!(
            ExitStatus::Signal(0).validate(),
            Err(ValidationError::SignalOutOfRange { signal: 0 })
        );
        assert_eq!(
            ExitStatus::Signal(65).validate(),
            Err(ValidationError::SignalOutOfRange { signal: 65 })
        );
    }

    #[test]
    fn process_spec_rules() {
        assert_eq!(spec().validate(), Ok(()));

        let mut s = spec();
        s.argv.clear();
        assert_eq!(s.validate(), Err(ValidationError::EmptyArgv));

        let mut s = spec();
        s.argv = vec![String::new(), "x".into()];
        assert_eq!(s.validate(), Err(ValidationError::EmptyProgram));

        let mut s = spec();
        s.argv.push("a\0b".into());
        assert_eq!(
            s.validate(),
            Err(ValidationError::NulByte {
                field: "process.argv[1]".into()
            })
        );

        let mut s = spec();
        s.argv.push(String::new());
        assert_eq!(
            s.validate(),
            Ok(()),
            "empty arguments after the program are fine"
        );

        let mut s = spec();
        s.env.push(("HOME".into(), "/ro\0ot".into()));
        assert_eq!(
            s.validate(),
            Err(ValidationError::NulByte {
                field: "process.env[1] (HOME)".into()
            })
        );

        let mut s = spec();
        s.env.push(("A\0".into(), String::new()));
        assert_eq!(
            s.validate(),
            Err(ValidationError::NulByte {
                field: "process.env[1] (name)".into()
            })
        );

        for bad in ["", "A=B"] {
            let mut s = spec();
            s.env.push((bad.into(), "v".into()));
            assert_eq!(
                s.validate(),
                Err(ValidationError::InvalidEnvName { name: bad.into() })
            );
        }

        let mut s = spec();
        s.env.push(("EMPTY".into(), String::new()));
        assert_eq!(s.validate(), Ok(()), "empty values are fine");

        let mut s = spec();
        s.cwd = "tmp".into();
        assert_eq!(
            s.validate(),
            Err(ValidationError::RelativeCwd { cwd: "tmp".into() })
        );

        let mut s = spec();
        s.cwd = "/t\0".into();
        assert_eq!(
            s.validate(),
            Err(ValidationError::NulByte {
                field: "process.cwd".into()
            })
        );
    }

    #[test]
    fn app_names_are_ac_names() {
        for ok in ["web", "a", "hello-world-2", "0"] {
            assert_eq!(validate_app_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "-a", "a-", "a--b", "Web", "a_b", "a/b", "..", ".", "a\0", "é",
        ] {
            assert_eq!(
                validate_app_name(bad),
                Err(ValidationError::InvalidAppName { name: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn window_size_rules() {
        assert_eq!(WindowSize { rows: 24, cols: 80 }.validate(), Ok(()));
        assert_eq!(
            WindowSize {
                rows: 1,
                cols: u16::MAX
            }
            .validate(),
            Ok(())
        );
        assert_eq!(
            WindowSize { rows: 0, cols: 80 }.validate(),
            Err(ValidationError::InvalidWindowSize { rows: 0, cols: 80 })
        );
        assert_eq!(
            WindowSize { rows: 24, cols: 0 }.validate(),
            Err(ValidationError::InvalidWindowSize { rows: 24, cols: 0 })
        );
    }
}
