//! Running network configurations: the verbs of the spec over a configuration list
//! (spec §3 "Execution of network configurations"; upstream `libcni/api.go`).

use std::path::PathBuf;
use std::time::Duration;

use cni_skel::Command;
use cni_skel::invoke;
use cni_types::config::{GcAttachment, NetConfList, PluginConf};
use cni_types::result::Result as CniResult;
use cni_types::version;
use serde_json::{Map, Value};

use crate::Error;
use crate::cache::Cache;

mod inspect;

/// Where upstream keeps its results cache.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// One attachment of a container to a network, as the runtime describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    /// The runtime's ID of the container (`CNI_CONTAINERID`).
    pub container_id: String,
    /// Path of the container's network namespace; may be empty for DEL.
    pub netns: String,
    /// Interface name inside the container.
    pub ifname: String,
    /// `CNI_ARGS` pairs, sent as `K1=V1;K2=V2`.
    pub args: Vec<(String, String)>,
    /// Values for capabilities (`portMappings`, `bandwidth`, ...); each plugin gets
    /// the ones it declares in `capabilities` as its `runtimeConfig`.
    pub capability_args: Map<String, Value>,
}

/// GC: the attachments the runtime still has; every other cached attachment of the
/// network is deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcArgs {
    /// The `{containerID, ifname}` pairs that are still in use.
    pub valid_attachments: Vec<GcAttachment>,
}

/// An attachment found in the results cache.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkAttachment {
    /// The container ID given at ADD.
    pub container_id: String,
    /// The network (configuration list) name.
    pub network: String,
    /// The interface name inside the container.
    pub ifname: String,
    /// The configuration list bytes cached at ADD.
    pub config: Vec<u8>,
    /// The netns path given at ADD.
    pub netns: String,
    /// The `CNI_ARGS` pairs given at ADD.
    pub cni_args: Vec<(String, String)>,
    /// The capability arguments given at ADD.
    pub capability_args: Map<String, Value>,
}

/// The runtime's handle: where plugins are, where the cache is, how long a plugin
/// may run. Cheap to clone, `Send + Sync`; every method blocks the calling thread
/// until the plugins are done (in async code, call it from `spawn_blocking`).
#[derive(Debug, Clone)]
pub struct CniConfig {
    paths: Vec<String>,
    cache: Cache,
    timeout: Option<Duration>,
}

/// What the verbs need from a list or from a single plugin configuration.
struct Net<'a> {
    name: &'a str,
    version: &'a str,
    plugins: &'a [PluginConf],
    bytes: &'a [u8],
    /// List operations put upstream's `plugin type=...` context on errors; the
    /// single-plugin ones return the plugin's error as it is.
    is_list: bool,
}

impl<'a> Net<'a> {
    fn list(list: &'a NetConfList) -> Self {
        Net {
            name: &list.name,
            version: &list.cni_version,
            plugins: &list.plugins,
            bytes: &list.bytes,
            is_list: true,
        }
    }

    fn single(plugin: &'a PluginConf, bytes: &'a [u8]) -> Self {
        Net {
            name: &plugin.name,
            version: &plugin.cni_version,
            plugins: std::slice::from_ref(plugin),
            bytes,
            is_list: false,
        }
    }

    fn at_least(&self, wanted: &str) -> Result<bool, Error> {
        version::greater_than_or_equal(version::or_default(self.version), wanted)
            .map_err(Error::Config)
    }

    fn wrap(&self, plugin: &PluginConf, verb: &str, e: Error) -> Error {
        if !self.is_list {
            return e;
        }
        let name = match plugin.raw.get("name").and_then(Value::as_str) {
            Some(n) => format!(" name={n:?}"),
            None => String::new(),
        };
        Error::context(
            format!("plugin type={:?}{name} failed ({verb})", plugin.plugin_type),
            e,
        )
    }
}

impl CniConfig {
    /// Plugins are searched in `paths`, in order (`CNI_PATH`); the cache is
    /// [`DEFAULT_CACHE_DIR`]; plugins may run as long as they like.
    pub fn new<S: Into<String>>(paths: impl IntoIterator<Item = S>) -> Self {
        CniConfig {
            paths: paths.into_iter().map(Into::into).collect(),
            cache: Cache::new(DEFAULT_CACHE_DIR),
            timeout: None,
        }
    }

    /// Keeps the results cache in `dir` (its files go to `dir/results/`).
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Cache::new(dir);
        self
    }

    /// Ends a plugin that runs longer than `timeout`: SIGTERM, then SIGKILL.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The plugin directories, in search order.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The results cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// ADD: runs the plugins in order, each getting the previous one's result as
    /// `prevResult`, then caches the final result. Returns it in the version the last
    /// plugin answered in. Stops at the first error (the runtime must then DEL).
    pub fn add_network_list(
        &self,
        list: &NetConfList,
        rt: &RuntimeConf,
    ) -> Result<CniResult, Error> {
        self.add(&Net::list(list), rt)
    }

    /// CHECK: every plugin, in order, with the cached result as `prevResult`.
    pub fn check_network_list(&self, list: &NetConfList, rt: &RuntimeConf) -> Result<(), Error> {
        // Upstream checks the version first: an old list with disableCheck still errs.
        require_check(&Net::list(list))?;
        if list.disable_check {
            return Ok(());
        }
        self.check(&Net::list(list), rt)
    }

    /// DEL: every plugin in reverse order, with the cached result as `prevResult`
    /// (from 0.4.0); the cache file goes once all succeeded. An unreadable cache
    /// never blocks DEL.
    pub fn del_network_list(&self, list: &NetConfList, rt: &RuntimeConf) -> Result<(), Error> {
        self.del(&Net::list(list), rt)
    }

    /// ADD of a single plugin configuration.
    pub fn add_network(&self, plugin: &PluginConf, rt: &RuntimeConf) -> Result<CniResult, Error> {
        let bytes = single_bytes(plugin);
        self.add(&Net::single(plugin, &bytes), rt)
    }

    /// CHECK of a single plugin configuration.
    pub fn check_network(&self, plugin: &PluginConf, rt: &RuntimeConf) -> Result<(), Error> {
        let bytes = single_bytes(plugin);
        let net = Net::single(plugin, &bytes);
        require_check(&net)?;
        self.check(&net, rt)
    }

    /// DEL of a single plugin configuration.
    pub fn del_network(&self, plugin: &PluginConf, rt: &RuntimeConf) -> Result<(), Error> {
        let bytes = single_bytes(plugin);
        self.del(&Net::single(plugin, &bytes), rt)
    }

    fn add(&self, net: &Net, rt: &RuntimeConf) -> Result<CniResult, Error> {
        let mut prev: Option<CniResult> = None;
        for plugin in net.plugins {
            let result = self
                .add_one(net, plugin, prev.as_ref(), rt)
                .map_err(|e| net.wrap(plugin, "add", e))?;
            prev = Some(result);
        }
        let result = prev.ok_or_else(|| Error::Config("no plugin configs found".into()))?;
        self.cache
            .write(net.name, net.bytes, rt, Some(result.to_value()))
            .map_err(|e| {
                Error::context(
                    format!("failed to set network {:?} cached result", net.name),
                    e,
                )
            })?;
        Ok(result)
    }

    fn add_one(
        &self,
        net: &Net,
        plugin: &PluginConf,
        prev: Option<&CniResult>,
        rt: &RuntimeConf,
    ) -> Result<CniResult, Error> {
        let binary = self.find(&plugin.plugin_type)?;
        // Upstream validates here, on ADD only: DEL must work for whatever was added.
        cni_types::validate::container_id(&rt.container_id)?;
        cni_types::validate::network_name(net.name)?;
        cni_types::validate::interface_name(&rt.ifname)?;
        let stdin = build_config(net, plugin, prev.map(CniResult::to_value), rt)?;
        let stdout = self.exec(&binary, Command::Add, rt, &stdin)?;
        Ok(invoke::parse_result(&stdout, net.version)?)
    }

    fn check(&self, net: &Net, rt: &RuntimeConf) -> Result<(), Error> {
        let cached = self.cached_result(net, rt).map_err(|e| {
            Error::context(
                format!("failed to get network {:?} cached result", net.name),
                e,
            )
        })?;
        let prev = cached.map(|r| r.to_value());
        for plugin in net.plugins {
            let binary = self.find(&plugin.plugin_type)?;
            let stdin = build_config(net, plugin, prev.clone(), rt)?;
            self.exec(&binary, Command::Check, rt, &stdin)?;
        }
        Ok(())
    }

    fn del(&self, net: &Net, rt: &RuntimeConf) -> Result<(), Error> {
        let mut prev = None;
        if net.at_least("0.4.0")? {
            match self.cached_result(net, rt) {
                Ok(cached) => prev = cached.map(|r| r.to_value()),
                // A cache we cannot use must not keep the attachment alive forever.
                Err(_) => self.cache.remove(net.name, rt),
            }
        }
        for plugin in net.plugins.iter().rev() {
            self.del_one(net, plugin, prev.clone(), rt)
                .map_err(|e| net.wrap(plugin, "delete", e))?;
        }
        self.cache.remove(net.name, rt);
        Ok(())
    }

    fn del_one(
        &self,
        net: &Net,
        plugin: &PluginConf,
        prev: Option<Value>,
        rt: &RuntimeConf,
    ) -> Result<(), Error> {
        let binary = self.find(&plugin.plugin_type)?;
        let stdin = build_config(net, plugin, prev, rt)?;
        self.exec(&binary, Command::Del, rt, &stdin).map(drop)
    }

    fn find(&self, plugin_type: &str) -> Result<PathBuf, Error> {
        invoke::find_in_path(plugin_type, &self.paths)
            .map_err(|msg| Error::Plugin(cni_types::Error::new(cni_types::code::UNKNOWN, msg)))
    }

    fn exec(
        &self,
        binary: &std::path::Path,
        command: Command,
        rt: &RuntimeConf,
        stdin: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let args = rt
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let path = self.paths.join(":");
        let env = [
            ("CNI_COMMAND", command.as_str()),
            ("CNI_CONTAINERID", rt.container_id.as_str()),
            ("CNI_NETNS", rt.netns.as_str()),
            ("CNI_IFNAME", rt.ifname.as_str()),
            ("CNI_ARGS", args.as_str()),
            ("CNI_PATH", path.as_str()),
        ];
        Ok(invoke::exec_with_timeout(
            binary,
            &env,
            stdin,
            self.timeout,
        )?)
    }
}

/// CHECK exists from spec 0.4.0.
fn require_check(net: &Net) -> Result<(), Error> {
    if !net.at_least("0.4.0")? {
        return Err(Error::CheckNotSupported(net.version.into()));
    }
    Ok(())
}

fn cached_config_error(network: &str, bytes: &[u8]) -> String {
    match serde_json::from_slice::<Map<String, Value>>(bytes) {
        Err(e) => format!("failed to unmarshal cached network {network:?} config: {e}"),
        Ok(map) => {
            let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
            format!("read cached network {network:?} config has wrong kind: {kind}")
        }
    }
}

fn single_bytes(plugin: &PluginConf) -> Vec<u8> {
    serde_json::to_vec(&plugin.raw).unwrap_or_default()
}

/// The plugin's object with the list's `name` and `cniVersion` (spec §3: always).
fn base_config(net: &Net, plugin: &PluginConf) -> Map<String, Value> {
    let mut config = plugin.raw.clone();
    config.insert("name".into(), Value::String(net.name.into()));
    config.insert("cniVersion".into(), Value::String(net.version.into()));
    config
}

/// The stdin of ADD, CHECK and DEL (spec §3 "Deriving execution configuration"):
/// `runtimeConfig` holds the capability arguments the plugin declared it wants
/// (replacing any on disk, when there is one), and `prevResult` the previous result.
fn build_config(
    net: &Net,
    plugin: &PluginConf,
    prev: Option<Value>,
    rt: &RuntimeConf,
) -> Result<Vec<u8>, Error> {
    let mut config = base_config(net, plugin);
    let runtime_config: Map<String, Value> = rt
        .capability_args
        .iter()
        .filter(|(capability, _)| plugin.capabilities.get(*capability) == Some(&true))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime_config.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    if let Some(prev) = prev {
        config.insert("prevResult".into(), prev);
    }
    serde_json::to_vec(&config).map_err(|e| Error::Config(e.to_string()))
}
