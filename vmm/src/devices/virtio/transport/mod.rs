//! Transports: how a driver in the guest reaches a [`super::backend::VirtioBackend`].
//!
//! The `kvm` engine serves every device through [`mmio::MmioTransport`] (virtio over MMIO,
//! virtio 1.2 §4.2); the `qemu` engine serves the same backends over vhost-user instead.

pub mod mmio;

pub use mmio::{MmioTransport, TransportError};
