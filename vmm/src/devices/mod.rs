//! Devices the engines give the guest.

pub mod pseudo;
pub mod virtio;
