//! QEMU's command line for a microvm guest. Facts measured with QEMU 7.2 (DESIGN.md):
//! vhost-user devices need modern virtio-mmio (`force-legacy=false`); shared guest memory
//! is a memfd backend named by `-M microvm,memory-backend=`; `-serial stdio` exits when
//! stdin closes, so the console is a socket of ours.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::devices::pseudo::boot_marker;

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// Software emulation (TCG).
    Tcg,
}

/// A virtio device QEMU puts on virtio-mmio and connects to our vhost-user server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostUserDevice {
    /// Chardev id (unique).
    pub id: String,
    /// Our listening vhost-user socket.
    pub socket: PathBuf,
    /// QEMU's device and its properties, e.g. `vhost-user-vsock-device` or
    /// `vhost-user-fs-device,tag=apps`.
    pub device: String,
}

/// What goes on QEMU's command line.
#[derive(Debug)]
pub struct QemuArgs<'a> {
    pub kernel: &'a Path,
    /// `None`: no `-initrd` (a guest such as the test guest needs none).
    pub initramfs: Option<&'a Path>,
    pub cmdline: &'a str,
    pub vcpus: u8,
    pub mem_mib: u32,
    pub accel: Accel,
    /// Unix socket (ours, listening) that QEMU connects the serial console to.
    pub console_socket: PathBuf,
    /// Unix socket (ours, listening) that QEMU connects the boot-marker port to.
    pub marker_socket: PathBuf,
    /// vhost-user devices.
    pub devices: Vec<VhostUserDevice>,
}

impl QemuArgs<'_> {
    /// The argument vector (without the program name).
    pub fn to_argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&str]| argv.extend(parts.iter().map(OsString::from));
        let (accel, cpu) = match self.accel {
            // arch-capabilities (MSR 0x10a) is refused by some KVM hosts (e.g. PVM).
            Accel::Kvm => ("kvm", "host,-arch-capabilities"),
            Accel::Tcg => ("tcg", "max"),
        };
        let mem = format!("{}M", self.mem_mib);
        push(&[
            "-name",
            "stage1-kvm",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
        ]);
        // The guest "powers off" by resetting (reboot=t); -no-reboot makes that QEMU's exit.
        push(&["-no-reboot"]);
        push(&["-M", "microvm,acpi=off,rtc=off,memory-backend=mem"]);
        push(&["-accel", accel, "-cpu", cpu]);
        push(&["-smp", &self.vcpus.to_string(), "-m", &mem]);
        push(&[
            "-object",
            &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
        ]);
        push(&["-global", "virtio-mmio.force-legacy=false"]);
        push(&[
            "-chardev",
            &format!("socket,id=console,path={}", self.console_socket.display()),
        ]);
        push(&["-serial", "chardev:console"]);
        push(&[
            "-chardev",
            &format!("socket,id=markers,path={}", self.marker_socket.display()),
        ]);
        push(&[
            "-device",
            &format!(
                "isa-debugcon,iobase={:#x},chardev=markers",
                boot_marker::PORT
            ),
        ]);
        for device in &self.devices {
            push(&[
                "-chardev",
                &format!("socket,id={},path={}", device.id, device.socket.display()),
            ]);
            push(&[
                "-device",
                &format!("{},chardev={}", device.device, device.id),
            ]);
        }
        argv.extend(["-kernel".into(), self.kernel.as_os_str().to_owned()]);
        if let Some(initramfs) = self.initramfs {
            argv.extend(["-initrd".into(), initramfs.as_os_str().to_owned()]);
        }
        argv.extend(["-append".into(), self.cmdline.into()]);
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(accel: Accel) -> Vec<String> {
        args_with(accel, Some(Path::new("/k/initramfs")))
    }

    fn args_with(accel: Accel, initramfs: Option<&Path>) -> Vec<String> {
        QemuArgs {
            kernel: Path::new("/k/vmlinux"),
            initramfs,
            cmdline: "console=ttyS0 quiet",
            vcpus: 2,
            mem_mib: 512,
            accel,
            console_socket: "/run/x/console.sock".into(),
            marker_socket: "/run/x/markers.sock".into(),
            devices: vec![],
        }
        .to_argv()
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
    }

    fn value_of<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn microvm_with_shared_memfd_memory_of_the_requested_size() {
        let argv = args(Accel::Tcg);
        assert_eq!(
            value_of(&argv, "-M"),
            ["microvm,acpi=off,rtc=off,memory-backend=mem"]
        );
        assert_eq!(
            value_of(&argv, "-object"),
            ["memory-backend-memfd,id=mem,size=512M,share=on"]
        );
        assert_eq!(value_of(&argv, "-m"), ["512M"]);
        assert_eq!(value_of(&argv, "-smp"), ["2"]);
        assert!(argv.contains(&"-no-reboot".to_owned()));
        assert_eq!(
            value_of(&argv, "-global"),
            ["virtio-mmio.force-legacy=false"]
        );
    }

    #[test]
    fn accel_and_cpu_model_follow_the_host() {
        let tcg = args(Accel::Tcg);
        assert_eq!(
            (value_of(&tcg, "-accel"), value_of(&tcg, "-cpu")),
            (vec!["tcg"], vec!["max"])
        );
        let kvm = args(Accel::Kvm);
        assert_eq!(value_of(&kvm, "-accel"), ["kvm"]);
        assert_eq!(value_of(&kvm, "-cpu"), ["host,-arch-capabilities"]);
    }

    #[test]
    fn console_and_markers_go_to_our_sockets_never_stdio() {
        let argv = args(Accel::Tcg);
        assert_eq!(
            value_of(&argv, "-chardev"),
            [
                "socket,id=console,path=/run/x/console.sock",
                "socket,id=markers,path=/run/x/markers.sock"
            ]
        );
        assert_eq!(value_of(&argv, "-serial"), ["chardev:console"]);
        assert_eq!(
            value_of(&argv, "-device"),
            ["isa-debugcon,iobase=0xe9,chardev=markers"]
        );
        assert!(!argv.iter().any(|a| a.contains("stdio")));
    }

    #[test]
    fn vhost_user_devices_get_a_chardev_each() {
        let argv: Vec<String> = QemuArgs {
            kernel: Path::new("/k/vmlinux"),
            initramfs: Some(Path::new("/k/initramfs")),
            cmdline: "",
            vcpus: 1,
            mem_mib: 128,
            accel: Accel::Tcg,
            console_socket: "/r/c".into(),
            marker_socket: "/r/m".into(),
            devices: vec![
                VhostUserDevice {
                    id: "vsock".into(),
                    socket: "/r/vsock.vhost".into(),
                    device: "vhost-user-vsock-device".into(),
                },
                VhostUserDevice {
                    id: "fs0".into(),
                    socket: "/r/fs0.vhost".into(),
                    device: "vhost-user-fs-device,tag=apps".into(),
                },
            ],
        }
        .to_argv()
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
        let chardevs = value_of(&argv, "-chardev");
        assert_eq!(
            chardevs[2..],
            [
                "socket,id=vsock,path=/r/vsock.vhost",
                "socket,id=fs0,path=/r/fs0.vhost"
            ]
        );
        let devices = value_of(&argv, "-device");
        assert_eq!(
            devices[1..],
            [
                "vhost-user-vsock-device,chardev=vsock",
                "vhost-user-fs-device,tag=apps,chardev=fs0"
            ]
        );
    }

    #[test]
    fn boot_files_and_cmdline_are_passed_verbatim() {
        let argv = args(Accel::Tcg);
        assert_eq!(value_of(&argv, "-kernel"), ["/k/vmlinux"]);
        assert_eq!(value_of(&argv, "-initrd"), ["/k/initramfs"]);
        assert_eq!(value_of(&argv, "-append"), ["console=ttyS0 quiet"]);
    }

    #[test]
    fn no_initramfs_means_no_initrd() {
        let argv = args_with(Accel::Tcg, None);
        assert!(value_of(&argv, "-initrd").is_empty());
        assert_eq!(value_of(&argv, "-kernel"), ["/k/vmlinux"]);
    }
}
