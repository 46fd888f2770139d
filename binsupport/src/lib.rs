//! Process plumbing shared by the outpost binaries: the `outpost` command line (crate
//! `outpost-cli`) and the cloud peer `outpost-cloud`. Neither binary depends on the other, so
//! what both need lives here, below them: how an error is reported (one line, causes said
//! once), what a panic prints, where logs go, how SIGTERM/SIGINT are caught, the
//! owner-only control socket, and files written whole or not at all.
//!
//! ```
//! use std::process::ExitCode;
//! let error = std::io::Error::other("disk full");
//! assert_eq!(outpost_binsupport::one_line(&error), "disk full");
//! let _code: ExitCode = outpost_binsupport::report("outpost", &error);
//! ```

mod file;
mod logging;
mod report;
mod signals;
mod socket;

pub use file::write_atomically;
pub use logging::{init_logging, LogTarget};
pub use report::{install_panic_hook, one_line, report};
pub use signals::Signals;
#[cfg(unix)]
pub use socket::owner_only_socket;
pub use socket::SocketError;
