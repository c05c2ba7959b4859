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

/// Connects to the agent's port through the vsock device, retrying while the agent is not
/// yet listening (it starts listening right after its ready marker).
pub fn connect(
    handle: &vmm::devices::virtio::vsock::VsockHandle,
    timeout: Duration,
) -> Result<std::os::unix::net::UnixStream, String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match handle.connect(protocol::AGENT_VSOCK_PORT) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("connecting to the guest agent: {e}")),
        }
    }
}
