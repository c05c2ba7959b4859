//! The KVM device: opened from a path (so tests and odd hosts can point elsewhere), checked
//! for what we use, and asked for its supported CPUID.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm};

use super::{ioctl, VstateError};

/// Capabilities the engine relies on, with the name used in errors.
const REQUIRED: &[(Cap, &str)] = &[
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Irqchip, "KVM_CAP_IRQCHIP (in-kernel irqchip)"),
    (Cap::Pit2, "KVM_CAP_PIT2 (in-kernel PIT)"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::MpState, "KVM_CAP_MP_STATE"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// An open KVM device.
#[derive(Debug)]
pub struct KvmContext {
    kvm: Kvm,
    path: PathBuf,
}

impl KvmContext {
    /// Opens the KVM device at `path` and checks its API and capabilities.
    pub fn open(path: &Path) -> Result<Self, VstateError> {
        let open_error = |source| VstateError::Open {
            path: path.to_owned(),
            source,
        };
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| open_error(kvm_ioctls::Error::new(libc::EINVAL)))?;
        let kvm = Kvm::new_with_path(&c_path).map_err(open_error)?;
        let context = Self {
            kvm,
            path: path.to_owned(),
        };
        context.check()?;
        Ok(context)
    }

    fn check(&self) -> Result<(), VstateError> {
        let missing = |what: String| VstateError::Missing {
            path: self.path.clone(),
            what,
        };
        let version = self.kvm.get_api_version();
        if version != 12 {
            return Err(missing(format!("API version 12 (it has {version})")));
        }
        for (cap, name) in REQUIRED {
            if !self.kvm.check_extension(*cap) {
                return Err(missing((*name).to_owned()));
            }
        }
        Ok(())
    }

    /// The underlying handle.
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The device's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fails unless KVM can run `vcpus` vCPUs.
    pub fn check_vcpus(&self, vcpus: u8) -> Result<(), VstateError> {
        let max = self.kvm.get_max_vcpus();
        if usize::from(vcpus) > max {
            return Err(VstateError::Missing {
                path: self.path.clone(),
                what: format!("room for {vcpus} vCPUs (its limit is {max})"),
            });
        }
        Ok(())
    }

    /// The CPUID KVM can give a guest on this host.
    pub fn supported_cpuid(&self) -> Result<CpuId, VstateError> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::DEFAULT_KVM_PATH;

    #[test]
    fn a_missing_device_is_an_open_error_naming_the_path() {
        let err = KvmContext::open(Path::new("/nonexistent/kvm")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot open /nonexistent/kvm read-write: No such file or directory (os error 2)"
        );
        let err = KvmContext::open(Path::new("/dev/null")).unwrap_err();
        assert!(err.to_string().contains("/dev/null"), "{err}");
    }

    /// Needs this host's /dev/kvm (it exists on every machine of this project; a missing
    /// one fails here with the reason).
    #[test]
    fn this_hosts_kvm_has_what_we_need_and_a_cpuid_with_long_mode() {
        let context = KvmContext::open(Path::new(DEFAULT_KVM_PATH)).unwrap();
        context.check_vcpus(2).unwrap();
        assert!(context.check_vcpus(255).is_err() || context.kvm().get_max_vcpus() >= 255);
        let cpuid = context.supported_cpuid().unwrap();
        let ext = cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == 0x8000_0001)
            .expect("leaf 0x8000_0001");
        assert_ne!(ext.edx & (1 << 29), 0, "long mode supported");
    }
}
