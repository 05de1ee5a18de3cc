//! Owner-only files and folders: the node's secrets (keys, API key hashes)
//! and its users' private data (stored prompts and answers, the pending
//! transactions) are never readable by other local users.
//!
//! Files are written 0600 through a temporary file that is created 0600,
//! fsynced and renamed into place (a crash leaves the old file or the new
//! one, and the content is never readable by others, not even for a
//! moment); folders are 0700. [`tighten`] fixes what an older version left
//! readable, with a warning.

use std::fs;
use std::path::Path;

/// Sets the permission bits of `path` (no-op off Unix).
pub(crate) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Sets `mode` on `path` if it grants more than `mode`, with a warning.
pub(crate) fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let now = fs::metadata(path)?.permissions().mode() & 0o777;
        if now & !mode != 0 {
            set_mode(path, mode)?;
            tracing::warn!(target: "trib::node", path = %path.display(), was = format!("{now:o}"),
                now = format!("{mode:o}"), "private file or folder was open to others; permissions tightened");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Creates `dir` (and its parents) readable by the owner only (0700); an
/// existing folder is tightened to 0700.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    tighten(dir, 0o700)
}

/// Writes `bytes` to `path`, replacing it, readable by the owner only
/// (0600).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // tempfile creates the file 0600 on Unix; set it anyway (umask-proof).
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-private-")
        .tempfile_in(dir)?;
    set_mode(tmp.path(), 0o600)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_writes_are_owner_only_and_open_files_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a/receipts");
        create_private_dir(&folder).unwrap();
        assert_eq!(mode(&folder), 0o700);
        let file = folder.join("x.json");
        fs::write(&file, b"old").unwrap();
        set_mode(&file, 0o644).unwrap();
        write_private(&file, b"new").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            fs::read_dir(&folder).unwrap().count(),
            1,
            "no temporary file left"
        );

        set_mode(&folder, 0o755).unwrap();
        create_private_dir(&folder).unwrap();
        assert_eq!(mode(&folder), 0o700);
        // Tightening never widens.
        set_mode(&file, 0o400).unwrap();
        tighten(&file, 0o600).unwrap();
        assert_eq!(mode(&file), 0o400);
    }
}
