//! Transports: how a driver in the guest reaches a [`super::backend::VirtioBackend`].
//!
//! The `kvm` engine serves every device through virtio over MMIO (virtio 1.2 §4.2, [`mmio`]);
//! the `qemu` engine serves the same backends over vhost-user instead.

pub mod mmio;
