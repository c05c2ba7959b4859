//! What the host can do: hardware virtualization, a usable `/dev/kvm`, QEMU.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// Default path of the KVM device.
pub const DEFAULT_KVM_PATH: &str = "/dev/kvm";

/// Whether the CPU advertises hardware virtualization (`vmx` or `svm` in
/// `/proc/cpuinfo`). Without it `/dev/kvm` may still exist (e.g. PVM) but cannot run a
/// stock Linux guest.
pub fn has_hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| cpuinfo_has_virtualization(&info))
}

fn cpuinfo_has_virtualization(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .flat_map(|line| line.split_whitespace())
        .any(|flag| flag == "vmx" || flag == "svm")
}

/// Checks that the KVM device at `path` can be opened read-write, naming why not.
pub fn check_kvm_device(path: &Path) -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot open {} read-write: {e}", path.display()))
}

/// Finds an executable by name in `$PATH` (or returns `name` itself if it has a slash
/// and is executable).
pub fn find_executable(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        return executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH")?;
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Total memory of the host in MiB, from `/proc/meminfo`.
pub fn total_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtualization_flags_are_read_from_the_flags_lines_only() {
        assert!(cpuinfo_has_virtualization(
            "processor : 0\nflags : fpu vme vmx sse\n"
        ));
        assert!(cpuinfo_has_virtualization("flags\t\t: fpu svm\n"));
        assert!(!cpuinfo_has_virtualization(
            "flags : fpu vme sse hypervisor\n"
        ));
        assert!(!cpuinfo_has_virtualization(
            "model name : vmx svm\nflags : fpu\n"
        ));
    }

    #[test]
    fn kvm_device_check_names_the_path_and_reason() {
        let err = check_kvm_device(Path::new("/nonexistent/kvm")).unwrap_err();
        assert!(
            err.contains("/nonexistent/kvm") && err.contains("No such file"),
            "{err}"
        );
    }

    #[test]
    fn finds_executables_on_path_and_rejects_missing_ones() {
        assert!(find_executable("sh").is_some());
        assert!(find_executable("/bin/sh").is_some());
        assert!(find_executable("stage1-kvm-no-such-tool").is_none());
        assert!(find_executable("/etc/passwd").is_none());
    }

    #[test]
    fn host_memory_is_known() {
        assert!(total_memory_mib().is_some_and(|m| m > 0));
    }
}
