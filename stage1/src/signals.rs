//! SIGINT and SIGTERM, the signals that end a VM run, delivered to a callback on a thread
//! of their own.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// Installed handlers; [`Terminate::close`] removes them.
#[derive(Debug)]
pub struct Terminate(Handle);

/// Calls `on_signal` with the signal's name ("SIGINT" or "SIGTERM") for each one received.
pub fn on_terminate(
    on_signal: impl Fn(&'static str) + Send + 'static,
) -> Result<Terminate, String> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("installing signal handlers: {e}"))?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            on_signal(if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            });
        }
    });
    Ok(Terminate(handle))
}

impl Terminate {
    /// Stops handling the signals.
    pub fn close(&self) {
        self.0.close();
    }
}
