//! host-local's on-disk store, byte-compatible with upstream's `disk` backend:
//! `<dataDir>/<network>/<ip>` holds `<containerID>\r\n<ifname>` (no newline; old
//! versions wrote the ID alone), `last_reserved_ip.<rangeSet>` holds the last address
//! handed out, and `lock` is the file every process `flock`s.
//!
//! Crash safety (docs/reliability.md): a reservation appears with its content or not
//! at all (written to a temporary file, then `link()`ed to the address's name, which
//! fails if it exists); `last_reserved_ip` is only a hint (see `reserve`). A temporary
//! file can only exist while its writer holds the lock, so whoever takes the lock
//! removes those a killed process left. An empty reservation (upstream's kill window)
//! is garbage that the next allocation and GC reclaim. No state file is opened
//! through a symlink.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

use crate::pkg::files::{O_NOFOLLOW, read_regular};
use std::path::{Path, PathBuf};

use cni_types::Error;
use cni_types::config::GcAttachment;
use nix::fcntl::{Flock, FlockArg};

const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const LOCK_FILE: &str = "lock";
/// Our temporary files; not an address, so upstream's host-local ignores them.
const TEMP_PREFIX: &str = ".rcni-tmp-";
/// State files are a few dozen bytes; anything larger is not ours.
const STATE_CAP: u64 = 4096;
/// Upstream's separator between container ID and ifname.
const LINE_BREAK: &str = "\r\n";

pub struct Store {
    dir: PathBuf,
}

/// Held while the store is in use; dropping it unlocks.
pub struct Lock {
    _flock: Flock<File>,
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what} {}: {e}", path.display()))
}

impl Store {
    pub fn open(data_dir: &str, network: &str) -> Result<Store, Error> {
        let dir = Path::new(data_dir).join(network);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error("mkdir", &dir, e))?;
        // The network's directory itself must not be a symlink planted elsewhere.
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| io_error("stat", &dir, e))?;
        if !meta.is_dir() {
            return Err(io_error("open", &dir, "not a directory (a symlink?)"));
        }
        Ok(Store { dir })
    }

    /// Takes the store's exclusive lock (blocking), shared with Go's host-local,
    /// then removes the temporary files of writers that were killed.
    pub fn lock(&self) -> Result<Lock, Error> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW)
            .open(&path)
            .or_else(|_| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .custom_flags(O_NOFOLLOW)
                    .open(&path)
            })
            .map_err(|e| io_error("open", &path, e))?;
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_error("flock", &path, e))?;
        self.sweep_temp_files();
        Ok(Lock { _flock: flock })
    }

    /// Under the lock, every temporary file is a killed writer's.
    fn sweep_temp_files(&self) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// A new file under a temporary name holding `content`; the caller links it
    /// into place.
    fn temp_file(&self, name: &str, content: &str) -> Result<PathBuf, Error> {
        let path = self.dir.join(format!("{TEMP_PREFIX}{name}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_error("create", &path, e))?;
        if let Err(e) = file.write_all(content.as_bytes()) {
            let _ = std::fs::remove_file(&path);
            return Err(io_error("write", &path, e));
        }
        Ok(path)
    }

    /// Reserves `ip` for the attachment; `false` if someone holds it already. The
    /// caller holds the lock.
    pub fn reserve(
        &self,
        container_id: &str,
        ifname: &str,
        ip: &IpAddr,
        range_set: usize,
    ) -> Result<bool, Error> {
        let path = self.dir.join(ip.to_string());
        let content = format!("{}{LINE_BREAK}{ifname}", container_id.trim());
        let temp = self.temp_file(&ip.to_string(), &content)?;
        let mut linked = std::fs::hard_link(&temp, &path);
        if matches!(&linked, Err(e) if e.kind() == ErrorKind::AlreadyExists)
            && self.is_empty_reservation(&path)
        {
            // Garbage from a writer killed between create and write (upstream).
            let _ = std::fs::remove_file(&path);
            linked = std::fs::hard_link(&temp, &path);
        }
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_error("create", &path, e)),
        }
        // The hint is overwritten in place, then cut to length. Not renamed: a rename
        // over an existing file makes ext4 flush the new one (`auto_da_alloc`), 0.3 ms
        // a call, and O_TRUNC costs a block reallocation. A write torn by a kill
        // leaves at worst another address or garbage, and the hint only says where
        // the round-robin scan starts; the reservations decide what is free.
        let last = self.dir.join(format!("{LAST_RESERVED_PREFIX}{range_set}"));
        let text = ip.to_string();
        let open = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(O_NOFOLLOW)
                .open(&last)
        };
        let file = open().or_else(|e| {
            // A symlink (or anything but a file) there is not ours to follow: it is
            // replaced, never written through.
            if std::fs::symlink_metadata(&last).is_ok_and(|m| !m.is_file()) {
                std::fs::remove_file(&last).and_then(|()| open())
            } else {
                Err(e)
            }
        });
        let written = file.and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.set_len(text.len() as u64)
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(io_error("write", &last, e));
        }
        Ok(true)
    }

    fn is_empty_reservation(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
    }

    pub fn last_reserved(&self, range_set: usize) -> Option<IpAddr> {
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{range_set}"));
        read_regular(&path, STATE_CAP, false)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether `ip` is held; an empty (garbage) reservation does not count.
    pub fn is_reserved(&self, ip: &IpAddr) -> bool {
        let path = self.dir.join(ip.to_string());
        std::fs::symlink_metadata(&path).is_ok() && !self.is_empty_reservation(&path)
    }

    /// Every reservation: (address, trimmed file content).
    fn reservations(&self) -> Result<Vec<(IpAddr, PathBuf, String)>, Error> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error("read", &self.dir, e))?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `lock` and `last_reserved_ip.N` are not reservations; only file names
            // that are addresses are.
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if let Ok(content) = read_regular(&path, STATE_CAP, false) {
                found.push((ip, path, content.trim().to_string()));
            }
        }
        Ok(found)
    }

    /// The addresses held by the attachment: files with `id\r\nifname`, or, when
    /// there are none, files with the ID alone (written by old versions).
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Vec<(IpAddr, PathBuf)>, Error> {
        let id = container_id.trim();
        let full = format!("{id}{LINE_BREAK}{ifname}");
        let all = self.reservations()?;
        let matching: Vec<_> = all
            .iter()
            .filter(|(_, _, content)| *content == full)
            .map(|(ip, path, _)| (*ip, path.clone()))
            .collect();
        if !matching.is_empty() {
            return Ok(matching);
        }
        Ok(all
            .into_iter()
            .filter(|(_, _, content)| content == id)
            .map(|(ip, path, _)| (ip, path))
            .collect())
    }

    /// Releases the attachment's addresses; an unknown attachment is fine.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<(), Error> {
        for (_, path) in self.find(container_id, ifname)? {
            remove(&path)?;
        }
        Ok(())
    }

    /// Releases one address.
    pub fn release_ip(&self, ip: &IpAddr) -> Result<(), Error> {
        remove(&self.dir.join(ip.to_string()))
    }

    /// GC: releases every reservation whose attachment is not in `valid`. A file with
    /// the ID alone is kept while any valid attachment has that ID; an empty one
    /// (garbage) never is.
    pub fn release_all_but(&self, valid: &[GcAttachment]) -> Result<(), Error> {
        let pairs: BTreeSet<String> = valid
            .iter()
            .map(|a| format!("{}{LINE_BREAK}{}", a.container_id.trim(), a.ifname))
            .collect();
        let ids: BTreeSet<&str> = valid.iter().map(|a| a.container_id.trim()).collect();
        for (_, path, content) in self.reservations()? {
            let keep = match content.split_once(LINE_BREAK) {
                Some(_) => pairs.contains(&content),
                None => ids.contains(content.as_str()),
            };
            if !keep {
                remove(&path)?;
            }
        }
        Ok(())
    }
}

fn remove(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error("remove", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_reserved_is_rewritten_in_place_and_cut_to_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), "net").unwrap();
        let long: IpAddr = "10.1.2.100".parse().unwrap();
        let short: IpAddr = "10.1.2.9".parse().unwrap();
        assert!(store.reserve("c1", "eth0", &long, 0).unwrap());
        assert!(store.reserve("c2", "eth0", &short, 0).unwrap());
        let last = dir.path().join("net/last_reserved_ip.0");
        assert_eq!(std::fs::read_to_string(&last).unwrap(), "10.1.2.9");
        assert_eq!(store.last_reserved(0), Some(short));
        assert!(!store.reserve("c3", "eth0", &short, 0).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("net/10.1.2.100")).unwrap(),
            "c1\r\neth0"
        );
    }
}
