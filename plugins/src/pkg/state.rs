//! Plugin state files (tuning's backups, firewall's and portmap's records,
//! host-device's saved device): written whole or not at all, removed without caring
//! whether they were there, errors that name the file.

use std::path::Path;

use cni_types::Error;

/// Writes `bytes` to `path` whole (a temporary file renamed into place, mode 0600,
/// missing directories 0700, never through a symlink).
pub fn save_state(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    cni_skel::files::write_whole(path, bytes)
        .map_err(|e| Error::internal(format!("failed to save {}: {e}", path.display())))
}

/// Removes `path`; one that is not there is fine.
pub fn remove_state(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::internal(format!(
            "failed to remove {}: {e}",
            path.display()
        ))),
        _ => Ok(()),
    }
}
