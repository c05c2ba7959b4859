//! What the agent does once the guest is up, chosen on the kernel command line.
//!
//! * `stage1_kvm.agent=serve`: serve the host over vsock (the pod's normal life).
//! * nothing: report ready and power off at once (the boot-only check and benchmark).
//!
//! The parameter has a dot, so the kernel neither takes it nor passes it to init as an
//! argument or environment variable; it is read from `/proc/cmdline`.

/// The kernel parameter naming the mode.
pub const PARAM: &str = "stage1_kvm.agent";

/// What to do after boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report ready, power off.
    BootCheck,
    /// Serve the host on vsock until it shuts the VM down.
    Serve,
}

/// The mode a kernel command line asks for; an unknown value is an error rather than a
/// guess.
pub fn from_cmdline(cmdline: &str) -> Result<Mode, String> {
    let mut mode = Mode::BootCheck;
    for word in cmdline.split_whitespace() {
        if let Some(value) = word.strip_prefix(PARAM).and_then(|r| r.strip_prefix('=')) {
            mode = match value {
                "serve" => Mode::Serve,
                other => {
                    return Err(format!(
                        "unknown {PARAM}={other} on the kernel command line"
                    ))
                }
            };
        }
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_only_when_asked() {
        assert_eq!(from_cmdline("console=ttyS0 quiet\n"), Ok(Mode::BootCheck));
        assert_eq!(from_cmdline(""), Ok(Mode::BootCheck));
        assert_eq!(
            from_cmdline("quiet stage1_kvm.agent=serve reboot=t\n"),
            Ok(Mode::Serve)
        );
        assert_eq!(
            from_cmdline("stage1_kvm.agentx=serve stage1_kvm.agent_=serve"),
            Ok(Mode::BootCheck)
        );
        assert!(from_cmdline("stage1_kvm.agent=bogus").is_err());
    }
}
