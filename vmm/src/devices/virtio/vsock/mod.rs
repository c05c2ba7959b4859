//! virtio-vsock: the host end of the guest's vsock stream sockets.
//!
//! Split like Firecracker's device, one job per module:
//! - [`device`]: [`Vsock`], the [`VirtioBackend`](super::backend::VirtioBackend): moves
//!   packets between the queues and the muxer, signals the driver when needed;
//! - [`packet`]: the packet header and the validation of what the guest hands us;
//! - [`connection`]: one stream's state machine with credit-based flow control;
//! - [`txbuf`]: the bounded buffer of guest bytes a host socket could not take yet;
//! - [`muxer`]: every connection and host socket behind one epoll fd;
//! - [`hybrid`]: Firecracker's hybrid `CONNECT <port>\n` protocol for host processes;
//! - [`handle`]: [`VsockHandle`], the in-process endpoint of the stage1 process itself;
//! - [`report`]: rate-limited log lines about misbehaving guests and host peers.
//!
//! The guest is CID [`GUEST_CID`] (3); the host is CID 2. Host processes reach guest port
//! `p` by connecting to the device's Unix socket and sending `CONNECT p\n`; a guest
//! connecting to host port `P` reaches a listener at `<socket path>_P`.

pub mod connection;
pub mod device;
pub mod handle;
pub mod hybrid;
pub mod muxer;
pub mod packet;
pub mod report;
pub mod txbuf;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use device::{Vsock, VsockError};
pub use handle::VsockHandle;

/// The guest's context ID (DESIGN.md, "vsock").
pub const GUEST_CID: u64 = 3;

/// Index of the receive queue (device → driver).
pub const RX_QUEUE: usize = 0;
/// Index of the transmit queue (driver → device).
pub const TX_QUEUE: usize = 1;
/// Index of the event queue (transport events; this device never posts any).
pub const EVT_QUEUE: usize = 2;
/// How many queues the device has.
pub const NUM_QUEUES: usize = 3;
/// The largest size of each queue: QEMU's `vhost-user-vsock-device` sets up 1024-entry
/// rings (SET_VRING_NUM), so anything smaller is refused under the qemu engine.
pub const QUEUE_SIZE: u16 = 1024;

/// Most connections the muxer holds at once (host- and guest-initiated together, counting
/// host clients still sending their `CONNECT` line).
pub const MAX_CONNECTIONS: usize = 1024;
