//! `mkinitramfs`: builds the guest initramfs from the guest agent (and, for tests, extra
//! files) as a reproducible newc archive.
//!
//! ```text
//! mkinitramfs --init target/.../guest-agent [--add SRC:DEST[:MODE]]... [--symlink DEST:TARGET]... -o initramfs.cpio
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use initramfs::Archive;

const USAGE: &str =
    "usage: mkinitramfs --init AGENT [--add SRC:DEST[:OCTAL_MODE]]... [--symlink DEST:TARGET]... -o OUTPUT";

struct Args {
    init: PathBuf,
    extra: Vec<(PathBuf, String, Option<u32>)>,
    symlinks: Vec<(String, String)>,
    output: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut init = None;
    let mut output = None;
    let mut extra = Vec::new();
    let mut symlinks = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--init" => init = Some(PathBuf::from(value()?)),
            "-o" | "--output" => output = Some(PathBuf::from(value()?)),
            "--add" => extra.push(parse_add(&value()?)?),
            "--symlink" => {
                let spec = value()?;
                let (dest, target) = spec
                    .split_once(':')
                    .ok_or_else(|| format!("--symlink {spec:?}: expected DEST:TARGET"))?;
                symlinks.push((dest.trim_start_matches('/').to_owned(), target.to_owned()));
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        init: init.ok_or_else(|| format!("--init is required\n{USAGE}"))?,
        output: output.ok_or_else(|| format!("-o is required\n{USAGE}"))?,
        extra,
        symlinks,
    })
}

fn parse_add(spec: &str) -> Result<(PathBuf, String, Option<u32>), String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(src), Some(dest)) = (parts.next(), parts.next()) else {
        return Err(format!("--add {spec:?}: expected SRC:DEST[:MODE]"));
    };
    let mode = parts
        .next()
        .map(|m| u32::from_str_radix(m, 8).map_err(|_| format!("--add {spec:?}: bad octal mode")))
        .transpose()?;
    Ok((
        PathBuf::from(src),
        dest.trim_start_matches('/').to_owned(),
        mode,
    ))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn build(args: &Args) -> Result<Vec<u8>, String> {
    let mut archive = Archive::new();
    let err = |e: initramfs::Error| e.to_string();
    // Mount points the agent uses, and the console the kernel opens for /init's stdio.
    for dir in ["dev", "proc", "sys", "run", "tmp"] {
        archive.directory(dir, 0o755).map_err(err)?;
    }
    archive
        .char_device("dev/console", 0o600, 5, 1)
        .map_err(err)?;
    archive
        .file("init", 0o755, read(&args.init)?)
        .map_err(err)?;
    for (src, dest, mode) in &args.extra {
        let data = read(src)?;
        let mode = match mode {
            Some(mode) => *mode,
            None => {
                use std::os::unix::fs::PermissionsExt;
                let meta =
                    std::fs::metadata(src).map_err(|e| format!("stat {}: {e}", src.display()))?;
                meta.permissions().mode() & 0o7777
            }
        };
        archive.file(dest, mode, data).map_err(err)?;
    }
    for (dest, target) in &args.symlinks {
        archive.symlink(dest, target).map_err(err)?;
    }
    archive.to_bytes().map_err(err)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), path.display()))
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| {
        let bytes = build(&args)?;
        write_atomically(&args.output, &bytes)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mkinitramfs: {message}");
            ExitCode::from(254)
        }
    }
}
