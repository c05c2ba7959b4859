//! Thin wrappers over the KVM objects: the `/dev/kvm` handle, the VM, guest memory and the
//! vCPUs. Every ioctl failure becomes a [`VstateError`] naming the operation.

pub mod kvm;
pub mod memory;
pub mod vcpu;
pub mod vm;

use std::path::PathBuf;

/// A KVM operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum VstateError {
    /// The KVM device cannot be opened.
    #[error("cannot open {} read-write: {source}", path.display())]
    Open {
        /// The device's path.
        path: PathBuf,
        /// Why.
        source: kvm_ioctls::Error,
    },
    /// The host's KVM lacks something we rely on.
    #[error("{}: KVM lacks {what}, which the kvm engine needs", path.display())]
    Missing {
        /// The device's path.
        path: PathBuf,
        /// The capability or limit.
        what: String,
    },
    /// An ioctl failed.
    #[error("{what}: {source}")]
    Ioctl {
        /// The operation, e.g. `KVM_SET_CPUID2 on vCPU 1`.
        what: String,
        /// Why.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be mapped.
    #[error("mapping {size} bytes of guest memory: {source}")]
    Memory {
        /// Bytes asked for.
        size: u64,
        /// Why.
        source: vm_memory::mmap::FromRangesError,
    },
}

/// Wraps an ioctl error with the operation's name.
pub(crate) fn ioctl(what: impl Into<String>) -> impl FnOnce(kvm_ioctls::Error) -> VstateError {
    let what = what.into();
    move |source| VstateError::Ioctl { what, source }
}
