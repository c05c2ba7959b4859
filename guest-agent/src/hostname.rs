//! The guest's hostname, from `stage1_kvm.hostname=NAME` on the kernel command line (the
//! pod's `--hostname`, or rkt's default `rkt-<uuid>`).

/// Kernel command line key.
const CMDLINE_KEY: &str = "stage1_kvm.hostname=";

/// The hostname a command line names, if any.
pub fn from_cmdline(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(CMDLINE_KEY))
        .next_back()
}

/// Sets the hostname named on `cmdline`, if one is.
pub fn apply(cmdline: &str) -> Result<(), String> {
    match from_cmdline(cmdline) {
        None => Ok(()),
        Some(name) => nix::unistd::sethostname(name)
            .map_err(|e| format!("setting the hostname {name:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_hostname_argument_wins() {
        assert_eq!(from_cmdline("quiet stage1_kvm.hostname=web"), Some("web"));
        assert_eq!(
            from_cmdline("stage1_kvm.hostname=a stage1_kvm.hostname=b"),
            Some("b")
        );
        assert_eq!(from_cmdline("quiet"), None);
    }
}
