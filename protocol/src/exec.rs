//! Messages of an exec session (one connection per `enter`): [`ClientToAgent`] and
//! [`AgentToClient`].
//!
//! Variants without fields are declared with braces (`Shutdown {}`), not as unit variants:
//! serde lets a unit variant of an internally tagged enum ignore extra members, and every
//! message must reject unknown fields.
//!
//! The order in which they may be sent is in the crate documentation ("Exec session").

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::message::{validate_chunk, Message};
use crate::process::{validate_app_name, validate_signal, ExitStatus, ProcessSpec, WindowSize};

/// The first message of an exec session: what to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Run inside this app's root (`/opt/stage2/<app>/rootfs`); `null` for the guest's own
    /// root (debugging the stage1 itself).
    pub app: Option<String>,
    /// What to run, as whom, where.
    pub process: ProcessSpec,
    /// Give the process a pseudo-terminal as stdin, stdout and stderr (its output then
    /// arrives as `stdout` only).
    pub tty: bool,
    /// The terminal's initial size; only with `tty`, `null` for the kernel's default.
    pub window: Option<WindowSize>,
}

impl ExecRequest {
    /// Checks the app name, the process, and the window size against `tty`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(app) = &self.app {
            validate_app_name(app)?;
        }
        self.process.validate()?;
        match self.window {
            Some(_) if !self.tty => Err(ValidationError::WindowWithoutTty),
            Some(window) => window.validate(),
            None => Ok(()),
        }
    }
}

/// Client (the `enter` side) → agent in an exec session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientToAgent {
    /// Start the session (first message, exactly once).
    Exec(ExecRequest),
    /// Bytes for the process's stdin (at most
    /// [`MAX_CHUNK_LEN`](crate::message::MAX_CHUNK_LEN)).
    Stdin {
        /// The bytes, base64 on the wire.
        #[serde(with = "crate::base64")]
        data: Vec<u8>,
    },
    /// No more stdin: the agent closes the process's stdin (with a tty: sends the
    /// terminal's EOF character).
    StdinEof {},
    /// The client's terminal changed size (ignored without a tty).
    Resize(WindowSize),
    /// Deliver this signal to the process (with a tty: to its foreground process group).
    Signal {
        /// Signal number, `1..=64`.
        signal: i32,
    },
}

/// Agent → client in an exec session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentToClient {
    /// The process runs.
    Started {
        /// Its pid in the guest.
        pid: u32,
    },
    /// Bytes the process wrote to stdout (or to its tty).
    Stdout {
        /// The bytes, base64 on the wire.
        #[serde(with = "crate::base64")]
        data: Vec<u8>,
    },
    /// Bytes the process wrote to stderr (never with a tty).
    Stderr {
        /// The bytes, base64 on the wire.
        #[serde(with = "crate::base64")]
        data: Vec<u8>,
    },
    /// The process ended; the last message of the session.
    Exited {
        /// How it ended.
        status: ExitStatus,
    },
    /// The session failed (e.g. the program could not be executed); the last message of the
    /// session.
    Error {
        /// What went wrong, for humans, e.g. `Unable to open "/foo": No such file or directory`.
        message: String,
    },
}

impl Message for ClientToAgent {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::Exec(request) => request.validate(),
            Self::Stdin { data } => validate_chunk(data),
            Self::StdinEof {} => Ok(()),
            Self::Resize(window) => window.validate(),
            Self::Signal { signal } => validate_signal(*signal),
        }
    }
}

impl Message for AgentToClient {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::Started { pid: 0 } => Err(ValidationError::ZeroPid),
            Self::Started { pid: _ } | Self::Error { message: _ } => Ok(()),
            Self::Stdout { data } | Self::Stderr { data } => validate_chunk(data),
            Self::Exited { status } => status.validate(),
        }
    }
}
