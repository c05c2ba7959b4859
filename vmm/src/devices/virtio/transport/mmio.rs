//! The virtio-mmio transport, modern register layout (version 2) only: virtio 1.2 §4.2.

pub mod registers;
