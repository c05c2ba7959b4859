//! Devices with no hardware counterpart.

pub mod boot_marker;
