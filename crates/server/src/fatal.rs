//! Failures a member cannot continue after: a WAL or backend write that did not happen (no
//! space, an I/O error, a read-only file system), or a thread that owns state stopping.
//!
//! As etcd's `lg.Fatal`, the member logs one line naming the file and the error and exits
//! non-zero at once. Going on would make a zombie: the raft or apply thread gone, every request
//! answered with `server stopped` for ever, and no supervisor to notice. After an exit nothing
//! acknowledged is lost: an answer is sent only after its entry is in the WAL, and a restart
//! replays the WAL from the backend's consistent index.

use std::fmt::Display;
use std::path::Path;

/// The exit status after a fatal storage failure (etcd's, from zap's `Fatal`).
pub const EXIT_CODE: i32 = 1;

/// Logs `message` with the file and the error, then exits the process.
pub fn exit(message: &str, path: &Path, error: &dyn Display) -> ! {
    tracing::error!(path = %path.display(), error = %error, "{message}");
    std::process::exit(EXIT_CODE)
}

/// Runs `body` on a thread named `name`; if it panics, the process exits (after the panic
/// message), because the rest of the server cannot work without it.
pub fn spawn_essential<F>(name: &str, body: F) -> std::io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let thread = name.to_string();
    std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
                tracing::error!(thread, "an essential thread stopped; exiting");
                std::process::exit(EXIT_CODE);
            }
        })?;
    Ok(())
}
