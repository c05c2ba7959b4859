//! What the guest boots: the kernel image and the initramfs, checked before any engine
//! starts so that a bad file is one clear error, whichever engine runs it.

pub mod kernel_image;

pub use kernel_image::{check_initramfs, PvhKernel};
