//! Loading network configurations from a directory, as upstream's `libcni/conf.go`
//! does (spec-libcni §3.2):
//!
//! 1. `*.conflist` files, in byte order of their paths; the first whose `name`
//!    matches wins. Unless the list says `loadOnlyInlinedPlugins`, the plugins in
//!    `<dir>/<name>/*.conf` are appended to its inlined ones.
//! 2. Else `*.conf` and `*.json` files, each a single plugin configuration, wrapped
//!    into a list of one.
//!
//! Any file that cannot be read or parsed stops the search, even one that belongs
//! to another network: a broken file should be noticed, not skipped.

use std::path::{Path, PathBuf};

use cni_types::config::{NetConfList, PluginConf};

use crate::Error;

/// The extensions of configuration lists.
pub const LIST_EXTENSIONS: &[&str] = &["conflist"];
/// The extensions of single plugin configurations (the pre-0.3.0 format).
pub const SINGLE_EXTENSIONS: &[&str] = &["conf", "json"];

/// The entries of `dir` that are not directories and have one of `extensions`,
/// sorted by path. A missing directory has none.
pub fn conf_files(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Config(format!(
                "failed to read plugin config files in {}: {e}",
                dir.display()
            )));
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let matches = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e));
        if matches {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("error reading {}: {e}", path.display())))
}

/// Parses a configuration list from bytes (no sub-directory plugins).
pub fn conf_list_from_bytes(bytes: &[u8]) -> Result<NetConfList, Error> {
    NetConfList::from_slice(bytes).map_err(Error::Config)
}

/// Reads a configuration list file, with the plugins of its sub-directory
/// `<dir>/<name>/*.conf` appended unless it says `loadOnlyInlinedPlugins`.
pub fn conf_list_from_file(path: &Path) -> Result<NetConfList, Error> {
    let mut list = conf_list_from_bytes(&read(path)?)?;
    if !list.load_only_inlined_plugins {
        let dir = path.parent().unwrap_or(Path::new(".")).join(&list.name);
        for file in conf_files(&dir, &["conf"])? {
            list.plugins.push(plugin_conf_from_file(&file)?);
        }
    }
    if list.plugins.is_empty() {
        return Err(Error::Config("no plugin configs found".into()));
    }
    Ok(list)
}

/// Reads a single plugin configuration file (`.conf`, `.json`).
pub fn plugin_conf_from_file(path: &Path) -> Result<PluginConf, Error> {
    PluginConf::from_slice(&read(path)?).map_err(Error::Config)
}

/// Finds the network named `name` in `dir` (upstream `LoadNetworkConf`).
pub fn load_network_conf(dir: &Path, name: &str) -> Result<NetConfList, Error> {
    let lists = conf_files(dir, LIST_EXTENSIONS)?;
    for file in &lists {
        let list = conf_list_from_file(file)?;
        if list.name == name {
            return Ok(list);
        }
    }
    let singles = conf_files(dir, SINGLE_EXTENSIONS)?;
    for file in &singles {
        let conf = plugin_conf_from_file(file)?;
        if conf.name == name {
            return Ok(NetConfList::from_plugin(conf));
        }
    }
    if lists.is_empty() && singles.is_empty() {
        return Err(Error::NoConfigsFound(dir.to_path_buf()));
    }
    Err(Error::NotFound {
        name: name.into(),
        dir: dir.to_path_buf(),
    })
}

/// Every network in `dir`, in the order [`load_network_conf`] considers them, with
/// the file each came from. A name seen twice is listed where it wins.
pub fn load_all(dir: &Path) -> Result<Vec<(PathBuf, NetConfList)>, Error> {
    let mut networks: Vec<(PathBuf, NetConfList)> = Vec::new();
    for file in conf_files(dir, LIST_EXTENSIONS)? {
        let list = conf_list_from_file(&file)?;
        if !networks.iter().any(|(_, l)| l.name == list.name) {
            networks.push((file, list));
        }
    }
    for file in conf_files(dir, SINGLE_EXTENSIONS)? {
        let conf = plugin_conf_from_file(&file)?;
        if !networks.iter().any(|(_, l)| l.name == conf.name) {
            networks.push((file, NetConfList::from_plugin(conf)));
        }
    }
    Ok(networks)
}
