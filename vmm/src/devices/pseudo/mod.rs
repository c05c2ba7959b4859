//! Devices with no hardware counterpart.

pub mod boot_marker;
pub mod exit_port;
