//! The `minirkt` binary.

fn main() -> std::process::ExitCode {
    minirkt::cli::main()
}
