//! The control sockets of both binaries: a Unix socket only its owner may use.

use std::path::Path;

/// Why an owner-only socket could not be made.
#[derive(Debug)]
pub enum SocketError {
    /// The socket could not be bound (e.g. a path longer than Unix sockets allow).
    Bind(std::io::Error),
    /// The socket could not be restricted to its owner; it was removed again.
    Restrict(std::io::Error),
}

impl std::fmt::Display for SocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketError::Bind(e) => write!(f, "cannot create the control socket: {e}"),
            SocketError::Restrict(e) => {
                write!(f, "cannot restrict the control socket to its owner: {e}")
            }
        }
    }
}

impl std::error::Error for SocketError {}

/// Binds a Unix socket at `path` that only its owner may use: a file left there by a process
/// that is gone is removed first (the caller holds the data directory, so no live process
/// serves it), the file is made mode 0600, and the owner's uid is returned so that each
/// connection can be checked against it (another user could connect between bind and
/// chmod).
#[cfg(unix)]
pub fn owner_only_socket(
    path: &Path,
) -> Result<(std::os::unix::net::UnixListener, u32), SocketError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(SocketError::Bind)?;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .and_then(|_| std::fs::metadata(path))
    {
        Ok(m) => Ok((listener, m.uid())),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(SocketError::Restrict(e))
        }
    }
}
