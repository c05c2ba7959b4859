//! `minirkt image build DIR -o OUT.aci` (like `actool build`).

use std::path::Path;

use crate::aci::{self, Compression};
use crate::error::Result;

/// Builds the ACI and prints its path.
pub fn build(dir: &Path, out: &Path, compression: Compression) -> Result<()> {
    aci::build(dir, out, compression)?;
    println!("{}", out.display());
    Ok(())
}
