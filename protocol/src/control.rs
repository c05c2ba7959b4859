//! Messages of the control connection: [`HostToAgent`] and [`AgentToHost`].
//!
//! Variants without fields are declared with braces (`Shutdown {}`), not as unit variants:
//! serde lets a unit variant of an internally tagged enum ignore extra members, and every
//! message must reject unknown fields.
//!
//! The order in which they may be sent is in the crate documentation ("Control
//! connection").

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::message::{validate_chunk, Message};
use crate::process::{validate_app_name, ExitStatus, ProcessSpec};

/// Host → agent on the control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostToAgent {
    /// Start an app: run `process` chrooted in `/opt/stage2/<name>/rootfs`.
    StartApp {
        /// The app's name in the pod manifest.
        name: String,
        /// What to run, as whom, where.
        process: ProcessSpec,
    },
    /// Stop one app, or all of them.
    Stop {
        /// The app to stop; `null` for every running app.
        app: Option<String>,
        /// How.
        mode: StopMode,
    },
    /// Kill whatever still runs, report it, sync, and power the VM off.
    Shutdown {},
}

/// How to stop an app.
///
/// On the wire: `{"graceful":{"timeout_ms":10000}}` or `"force"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StopMode {
    /// `SIGTERM`, then `SIGKILL` if still running after `timeout_ms` milliseconds.
    Graceful {
        /// How long to wait between `SIGTERM` and `SIGKILL`.
        timeout_ms: u32,
    },
    /// `SIGKILL` at once.
    Force,
}

/// Agent → host on the control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentToHost {
    /// First message after the handshake: the agent runs.
    Hello {
        /// The agent's build version (informational, e.g. `"0.1.0"`).
        agent_version: String,
    },
    /// The guest is set up; `start_app` is accepted from now on.
    Ready {},
    /// An app's process was started.
    AppStarted {
        /// The app.
        name: String,
        /// Its pid in the guest.
        pid: u32,
    },
    /// Bytes an app wrote (at most [`MAX_CHUNK_LEN`](crate::message::MAX_CHUNK_LEN)).
    AppOutput {
        /// The app.
        name: String,
        /// Which of its streams.
        stream: OutputStream,
        /// The bytes, base64 on the wire.
        #[serde(with = "crate::base64")]
        data: Vec<u8>,
    },
    /// An app's process ended; all of its output was sent before this.
    AppExited {
        /// The app.
        name: String,
        /// How it ended.
        status: ExitStatus,
    },
    /// Something failed: an app could not be started (`app` names it, and no `app_started`
    /// or `app_exited` follows for it), a `stop` named no running app, or the agent is
    /// about to close the connection (`app` is `null`).
    Error {
        /// The app concerned, if any.
        app: Option<String>,
        /// What went wrong, for humans.
        message: String,
    },
}

/// An app's output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

/// Validates an optional app name.
fn validate_optional_app(app: Option<&str>) -> Result<(), ValidationError> {
    app.map_or(Ok(()), validate_app_name)
}

impl Message for HostToAgent {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::StartApp { name, process } => {
                validate_app_name(name)?;
                process.validate()
            }
            Self::Stop { app, mode: _ } => validate_optional_app(app.as_deref()),
            Self::Shutdown {} => Ok(()),
        }
    }
}

impl Message for AgentToHost {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::Hello { agent_version: _ } | Self::Ready {} => Ok(()),
            Self::AppStarted { name, pid } => {
                validate_app_name(name)?;
                if *pid == 0 {
                    return Err(ValidationError::ZeroPid);
                }
                Ok(())
            }
            Self::AppOutput {
                name,
                stream: _,
                data,
            } => {
                validate_app_name(name)?;
                validate_chunk(data)
            }
            Self::AppExited { name, status } => {
                validate_app_name(name)?;
                status.validate()
            }
            Self::Error { app, message: _ } => validate_optional_app(app.as_deref()),
        }
    }
}
