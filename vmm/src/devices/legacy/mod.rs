//! Emulated PC hardware the guest expects at fixed addresses.

pub mod serial;
