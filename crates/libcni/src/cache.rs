//! The results cache: one file per attachment, `<dir>/results/<network>-<containerID>-<ifname>`,
//! in upstream's `cniCacheV1` format, so a node can switch between upstream's libcni
//! and ours with attachments in place (spec-libcni §4.1).
//!
//! Beyond upstream: a file is written to a temporary name, synced and renamed, so a
//! crash leaves the old file or the new one, never an empty one; and reading is
//! tolerant: an empty file counts as absent (cni#1055, cni#1149).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, RuntimeConf};

/// The `kind` of the current cache format.
pub const KIND: &str = "cniCacheV1";

/// One cache file, field for field in upstream's order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Always [`KIND`] for this format.
    pub kind: String,
    /// The container ID given at ADD.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The network configuration list's bytes, base64 as Go writes a `[]byte`.
    #[serde(with = "base64_bytes")]
    pub config: Vec<u8>,
    /// The interface name inside the container.
    #[serde(rename = "ifName")]
    pub ifname: String,
    /// The network (configuration list) name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// The netns path given at ADD.
    #[serde(rename = "netns", default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    /// The `CNI_ARGS` pairs given at ADD, as `[key, value]` arrays.
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<(String, String)>,
    /// The capability arguments given at ADD.
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    /// The final ADD result, in the version the last plugin answered in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // Go writes a nil []byte as null.
        let text: Option<String> = Option::deserialize(d)?;
        BASE64
            .decode(text.unwrap_or_default())
            .map_err(serde::de::Error::custom)
    }
}

/// What a cache file holds, once read.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    /// The current format.
    Entry(CacheEntry),
    /// A file written by libcni before 0.7: the result JSON alone.
    LegacyResult(Vec<u8>),
}

/// The cache directory and its file naming.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache kept in `dir` (its files go to `dir/results/`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// The file of one attachment; all three parts are required.
    pub fn path(&self, network: &str, rt: &RuntimeConf) -> Result<PathBuf, Error> {
        if network.is_empty() || rt.container_id.is_empty() || rt.ifname.is_empty() {
            return Err(Error::Cache(format!(
                "cache file path requires network name ({network:?}), container ID ({:?}), and interface name ({:?})",
                rt.container_id, rt.ifname
            )));
        }
        Ok(self
            .results_dir()
            .join(format!("{network}-{}-{}", rt.container_id, rt.ifname)))
    }

    /// Writes the entry of an attachment: temp file (0600) in the same directory
    /// (0700), fsync, rename, fsync of the directory.
    pub fn write(
        &self,
        network: &str,
        config: &[u8],
        rt: &RuntimeConf,
        result: Option<Value>,
    ) -> Result<(), Error> {
        let path = self.path(network, rt)?;
        let entry = CacheEntry {
            kind: KIND.into(),
            container_id: rt.container_id.clone(),
            config: config.to_vec(),
            ifname: rt.ifname.clone(),
            network_name: network.into(),
            netns: rt.netns.clone(),
            cni_args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            result,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| Error::Cache(e.to_string()))?;
        write_atomically(&path, &bytes).map_err(|e| Error::Cache(e.to_string()))
    }

    /// Reads an attachment's file: `None` if it is missing or empty.
    pub fn read(&self, network: &str, rt: &RuntimeConf) -> Result<Option<Cached>, Error> {
        let path = self.path(network, rt)?;
        let bytes = match read_entry(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Cache(e.to_string())),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(Some(parse(&bytes)))
    }

    /// Removes an attachment's file; a missing one is fine.
    pub fn remove(&self, network: &str, rt: &RuntimeConf) {
        if let Ok(path) = self.path(network, rt) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Every readable current-format entry, sorted by file name; with a container ID,
    /// only that container's (upstream `GetCachedAttachments`).
    pub fn entries(&self, container_id: Option<&str>) -> Vec<CacheEntry> {
        let Ok(dir) = std::fs::read_dir(self.results_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut entries = Vec::new();
        for name in names {
            if let Some(id) = container_id {
                // The cheap filter on the name first: "<net>-<id>-<ifname>".
                let pattern = format!("-{id}-");
                if !name.contains(&pattern) || name.starts_with(&pattern) {
                    continue;
                }
            }
            let Ok(bytes) = read_entry(&self.results_dir().join(&name)) else {
                continue;
            };
            let Cached::Entry(entry) = parse(&bytes) else {
                continue;
            };
            if entry.ifname.is_empty() || entry.network_name.is_empty() {
                continue;
            }
            if container_id.is_some_and(|id| id != entry.container_id) {
                continue;
            }
            entries.push(entry);
        }
        entries
    }
}

fn parse(bytes: &[u8]) -> Cached {
    match serde_json::from_slice::<CacheEntry>(bytes) {
        Ok(entry) if entry.kind == KIND => Cached::Entry(entry),
        _ => Cached::LegacyResult(bytes.to_vec()),
    }
}

/// A cache entry: a regular file of at most 1 MiB, never read through a symlink (a
/// planted link or device must not make a runtime read elsewhere or hang).
fn read_entry(path: &Path) -> std::io::Result<Vec<u8>> {
    cni_skel::files::read_regular_bytes(path, 1 << 20, false)
}

/// Temporary files of this process are `.tmp-<pid>-<random>`, so the ones a killed
/// writer left can be told from a live writer's.
const TEMP_PREFIX: &str = ".tmp-";

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    sweep_stale_temp_files(dir);
    let mut file = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes `.tmp-<pid>-*` files whose process is gone (killed between creating the
/// temporary file and renaming it into place).
fn sweep_stale_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(TEMP_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000), ..Default::default() })]
        /// Whatever is in a cache file (truncated, foreign, garbage), reading it gives
        /// an entry or a legacy result, never a panic.
        #[test]
        fn any_cache_file_reads_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            cut in 0usize..400,
        ) {
            let _ = parse(&bytes);
            let entry = format!(
                r#"{{"kind":"cniCacheV1","containerId":"c","config":"{}","ifName":"eth0","networkName":"n","result":{}}}"#,
                String::from_utf8_lossy(&bytes).replace('"', ""),
                serde_json::to_string(&String::from_utf8_lossy(&bytes)).unwrap_or_default()
            );
            let _ = parse(&entry.as_bytes()[..cut.min(entry.len())]);
            let _ = parse(entry.as_bytes());
        }
    }

    #[test]
    fn planted_symlinks_are_not_read_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let rt = rt("c1", "eth0");
        let path = cache.path("net", &rt).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "{}").unwrap();
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        assert!(cache.read("net", &rt).is_err(), "a symlink is not followed");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        write_atomically(&path, b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn a_write_sweeps_the_temp_files_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".tmp-999999999-abc");
        let live = dir.path().join(format!(".tmp-{}-xyz", std::process::id()));
        let other = dir.path().join(".tmp-notapid");
        for f in [&dead, &live, &other] {
            std::fs::write(f, "partial").unwrap();
        }
        write_atomically(&dir.path().join("entry"), b"{}").unwrap();
        assert!(!dead.exists(), "a dead writer's temp file goes");
        assert!(
            live.exists() && other.exists(),
            "a live writer's and foreign files stay"
        );
        assert_eq!(std::fs::read(dir.path().join("entry")).unwrap(), b"{}");
    }

    fn rt(id: &str, ifname: &str) -> RuntimeConf {
        RuntimeConf {
            container_id: id.into(),
            ifname: ifname.into(),
            netns: "/run/netns/x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn path_needs_all_three_parts() {
        let cache = Cache::new("/c");
        assert_eq!(
            cache.path("net", &rt("id", "eth0")),
            Ok(PathBuf::from("/c/results/net-id-eth0"))
        );
        assert_eq!(
            cache
                .path("", &rt("id", "eth0"))
                .expect_err("no net")
                .to_string(),
            r#"cache file path requires network name (""), container ID ("id"), and interface name ("eth0")"#
        );
        assert!(cache.path("n", &rt("", "eth0")).is_err());
        assert!(cache.path("n", &rt("id", "")).is_err());
    }

    #[test]
    fn empty_files_count_as_absent_and_garbage_is_legacy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let rt = rt("c1", "eth0");
        assert_eq!(cache.read("n", &rt), Ok(None));
        let path = cache.path("n", &rt).expect("path");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"").expect("write");
        assert_eq!(cache.read("n", &rt), Ok(None));
        std::fs::write(&path, b"garbage").expect("write");
        assert_eq!(
            cache.read("n", &rt),
            Ok(Some(Cached::LegacyResult(b"garbage".to_vec())))
        );
    }

    #[test]
    fn written_files_are_private_and_in_upstream_order() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let mut rt = rt("c1", "eth0");
        rt.args = vec![("FOO".into(), "BAR".into())];
        cache
            .write(
                "net",
                br#"{"name":"net"}"#,
                &rt,
                Some(serde_json::json!({"cniVersion":"1.0.0"})),
            )
            .expect("write");
        let path = cache.path("net", &rt).expect("path");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            r#"{"kind":"cniCacheV1","containerId":"c1","config":"eyJuYW1lIjoibmV0In0=","ifName":"eth0","networkName":"net","netns":"/run/netns/x","cniArgs":[["FOO","BAR"]],"result":{"cniVersion":"1.0.0"}}"#
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        assert_eq!(cache.entries(Some("c1")).len(), 1);
        assert_eq!(cache.entries(Some("c")).len(), 0);
        cache.remove("net", &rt);
        cache.remove("net", &rt);
        assert_eq!(cache.read("net", &rt), Ok(None));
    }
}
