//! tracing setup: `RUST_LOG` decides, with a default per binary.

use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// A service (the cloud peer) logs to stdout, as services do.
    Stdout,
    /// A command line keeps stdout for its output (JSON) and logs to stderr.
    Stderr,
}

/// Installs the global subscriber. `default` applies when `RUST_LOG` is unset or invalid.
pub fn init_logging(default: &str, target: LogTarget) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(true);
    // A second call (tests running several commands in one process) keeps the first.
    let _ = match target {
        LogTarget::Stdout => builder.with_writer(std::io::stdout).try_init(),
        LogTarget::Stderr => builder.with_writer(std::io::stderr).try_init(),
    };
}
