//! Virtio devices. A device is written once against [`backend::VirtioBackend`] and served
//! both ways: behind our virtio-mmio transport (`kvm` engine) and over vhost-user to QEMU
//! (`qemu` engine).

pub mod backend;
pub mod fs;
pub mod transport;
pub mod vhost_user;
pub mod vsock;
