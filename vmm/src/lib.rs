//! The VMM library of stage1-kvm: engines that run a guest (our in-process KVM VMM, or
//! QEMU microvm as a child) and the device backends both serve. It knows nothing about
//! rkt; the `stage1-kvm` binary drives it.

pub mod boot;
pub mod devices;
pub mod engine;
pub mod host;
