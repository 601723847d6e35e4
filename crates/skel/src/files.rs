//! Reading files that come from configs or from state directories: regular files
//! only, with a size cap, and (for state) without following a symlink, so that
//! `resolvConf: /dev/zero` or a symlink planted in a data directory can neither hang
//! a plugin nor make it read or overwrite another file.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `O_NOFOLLOW`: a symlink as the last path component fails the open with ELOOP.
pub const O_NOFOLLOW: i32 = nix::libc::O_NOFOLLOW;

/// Opens `path` for reading; with `follow` false a symlink is refused. Anything but a
/// regular file (a device, a FIFO, a directory) is refused as well.
pub fn open_regular(path: &Path, follow: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    // O_NONBLOCK: opening a FIFO must not wait for a writer; a regular file ignores it.
    let mut flags = nix::libc::O_NONBLOCK;
    if !follow {
        flags |= O_NOFOLLOW;
    }
    let file = options.custom_flags(flags).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// The bytes of a regular file of at most `cap` bytes.
pub fn read_regular_bytes(path: &Path, cap: u64, follow: bool) -> std::io::Result<Vec<u8>> {
    let file = open_regular(path, follow)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("larger than {cap} bytes"),
        ));
    }
    Ok(bytes)
}

/// The text of a regular file of at most `cap` bytes.
pub fn read_regular(path: &Path, cap: u64, follow: bool) -> std::io::Result<String> {
    String::from_utf8(read_regular_bytes(path, cap, follow)?)
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// Writes a state file whole or not at all: the bytes go to a temporary file next
/// to it (named for this process, so concurrent writers in one directory do not
/// collide; never through a symlink), which is then renamed into place. Missing
/// directories are made with mode 0700, the file has mode 0600.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(ErrorKind::InvalidInput, "no file name"));
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&temp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {

    #[test]
    fn state_files_are_written_whole_without_following_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.json");
        write_whole(&path, b"one").unwrap();
        write_whole(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        // A symlink planted at the final name is replaced, not followed.
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("a/link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_whole(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
    use super::*;

    #[test]
    fn devices_symlinks_and_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "abc").unwrap();
        assert_eq!(read_regular(&file, 10, false).unwrap(), "abc");
        assert!(read_regular(&file, 2, false).is_err(), "over the cap");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(
            read_regular(&link, 10, false).is_err(),
            "a symlink in state"
        );
        assert_eq!(
            read_regular(&link, 10, true).unwrap(),
            "abc",
            "followed in configs"
        );
        for device in ["/dev/zero", "/dev/urandom", "/dev/null"] {
            assert!(
                read_regular(Path::new(device), 10, true).is_err(),
                "{device}"
            );
        }
        assert!(read_regular(dir.path(), 10, true).is_err(), "a directory");
    }
}
