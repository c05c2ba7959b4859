//! The in-process KVM engine. Its VMM (vCPUs, virtio-mmio transport, devices) is the
//! subject of the next milestone; until then it declares itself unusable, so `auto` picks
//! `qemu` and an explicit `kvm` request fails with the reason.

pub mod arch;

use std::path::PathBuf;

use super::{Engine, EngineError, HostFacts, Mailbox, VirtioDevice, VmEnd, VmEvent, VmSpec};

/// Our VMM on `/dev/kvm`.
#[derive(Debug)]
pub struct KvmEngine {
    kvm_path: PathBuf,
}

impl KvmEngine {
    /// An engine using the KVM device at `kvm_path`.
    pub fn new(kvm_path: PathBuf) -> Self {
        Self { kvm_path }
    }
}

/// Why the kvm engine cannot run on this host, if it cannot.
pub fn unusable_reason(facts: &HostFacts) -> Option<String> {
    if let Err(reason) = &facts.kvm_device {
        return Some(reason.clone());
    }
    if !facts.hardware_virtualization {
        return Some("no hardware virtualization (vmx/svm) on this host".to_owned());
    }
    Some("the kvm engine is not implemented yet".to_owned())
}

impl Engine for KvmEngine {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn run(
        &self,
        _spec: &VmSpec,
        _devices: Vec<VirtioDevice>,
        _mailbox: Mailbox,
        _on_event: &mut dyn FnMut(&VmEvent),
    ) -> Result<VmEnd, EngineError> {
        Err(EngineError::Unavailable(format!(
            "engine kvm ({}): not implemented yet",
            self.kvm_path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_missing_requirement_first() {
        let no_device = HostFacts {
            hardware_virtualization: true,
            kvm_device: Err("cannot open /dev/kvm read-write: No such file".into()),
        };
        assert!(unusable_reason(&no_device).unwrap().contains("/dev/kvm"));
        let no_vmx = HostFacts {
            hardware_virtualization: false,
            kvm_device: Ok(()),
        };
        assert!(unusable_reason(&no_vmx).unwrap().contains("vmx/svm"));
    }
}
