//! Files written whole or not at all: backups and exports of both binaries.

use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes a file at `path` whole or not at all: `write` fills a temporary file beside it,
/// which is synced and then renamed over `path`. A reader, or a crash, never sees half a
/// file, and a failed write leaves nothing behind (the temporary file is removed). Returns
/// what `write` returned and the file's size in bytes.
pub fn write_atomically<T, E>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<T, E>,
) -> Result<(T, u64), E>
where
    E: From<std::io::Error>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut w = BufWriter::new(
        tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)?,
    );
    let out = write(&mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    let bytes = tmp.as_file().metadata()?.len();
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        // The rename itself is durable once the directory is synced.
        let _ = d.sync_all();
    }
    Ok((out, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_nothing_and_a_good_one_replaces_the_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("backup.bin");
        std::fs::write(&path, b"old").expect("write the old file");
        let failed: Result<((), u64), std::io::Error> = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);

        let (n, bytes) = write_atomically(&path, |w| -> std::io::Result<u32> {
            w.write_all(b"new contents")?;
            Ok(7)
        })
        .expect("write");
        assert_eq!((n, bytes), (7, 12));
        assert_eq!(std::fs::read(&path).expect("read"), b"new contents");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}
