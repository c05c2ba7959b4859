//! The `gc` entrypoint (contract §2.3): release what `run` created. Everything of ours lives
//! in the pod directory (the engine's sockets) until networking lands, so this removes
//! those files; it is idempotent and tolerates a pod that never started or crashed.

use super::args::GcArgs;
use super::layout::PodLayout;

/// Cleans up after the pod in the working directory.
pub fn gc(args: &GcArgs) -> Result<(), String> {
    let layout = PodLayout::current()?;
    layout.remove_run_files()?;
    if args.debug {
        eprintln!("stage1-kvm: gc: pod {} cleaned up", args.uuid);
    }
    Ok(())
}
