//! The host side of the host ↔ agent protocol (`protocol` crate): the control connection
//! of a run, and exec sessions. Connections arrive as connected Unix streams (from the
//! vsock device's in-process handle, or through its hybrid socket); this module only
//! speaks the protocol over them.

pub mod control;
pub mod exec;
pub mod hybrid;

use std::time::Duration;

/// How long a peer may stay silent during the handshake before we give up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
