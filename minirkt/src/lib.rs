//! `minirkt`: a small rkt-compatible stage0 for this project's tests and demo.
//!
//! It lays out pods and invokes the stage1 entrypoints **exactly** as rkt v1.30 does, so
//! a stage1 that works under minirkt works under the real rkt. The specification is
//! `../shared/rkt-stage1-contract.md`; every behaviour taken from it cites its section.
//!
//! Modules, one job each:
//! - [`cli`] and [`args`]: the command line (rkt's syntax for run/prepare);
//! - [`cmd`]: the commands;
//! - [`manifest`]: appc schema types;  [`aci`]: building and reading ACIs;
//! - [`store`]: the image store and tree store under `<dir>/cas`;
//! - [`pod`], [`state`], [`lock`]: pod directories, states and their flock locks;
//! - [`prepare`], [`run`], [`render`], [`mountinfo`]: building a pod and starting it;
//! - [`exec`]: entrypoint lookup and the exact argv per interface version;
//! - [`harness`]: driving the binary from tests and benchmarks.

pub mod aci;
pub mod args;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod exec;
pub mod harness;
pub mod lock;
pub mod manifest;
pub mod mountinfo;
pub mod pod;
pub mod prepare;
pub mod render;
pub mod run;
pub mod state;
pub mod store;

pub use error::{Error, Result, EXIT_FAILURE};
