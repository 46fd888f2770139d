//! Logs of the node (tracing) for apps that want them on standard error.

use crate::error::{guard, OutpostError, Result};

/// Writes outpost's logs to standard error (logcat shows them on Android), filtered by
/// `filter` in `RUST_LOG` syntax, e.g. `"info"` or `"outpost_transport=debug,info"`.
/// Only the first call in a process installs the logger; later calls return `false`.
#[uniffi::export]
pub fn enable_logging(filter: String) -> Result<bool> {
    guard("enableLogging", || {
        let filter = tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| {
            OutpostError::InvalidConfig(format!(
                "log filter {filter:?} is invalid ({e}); use e.g. \"info\" or \"outpost_transport=debug\""
            ))
        })?;
        Ok(tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init()
            .is_ok())
    })
}
