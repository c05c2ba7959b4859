//! Devices the engines give the guest.

pub mod bus;
pub mod legacy;
pub mod pseudo;
pub mod virtio;
