//! Integration tests of minirkt against a stub stage1 (no VM needed): the exact argv,
//! cwd, environment and lock stage1 receives, pod layouts in overlay and copy modes,
//! the pod lifecycle (status, list, enter, stop, gc, rm, prepare/run-prepared), and bad
//! input. They mount overlayfs and therefore run as root.

mod bad_input;
mod layout;
mod lifecycle;
mod run_argv;
mod support;
