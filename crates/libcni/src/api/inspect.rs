//! The verbs that look after networks rather than attach containers: GC, STATUS,
//! VERSION probes, validation, and the results cache as runtimes query it.

use cni_skel::{Command, invoke};
use cni_types::config::{NetConfList, PluginConf};
use cni_types::result::Result as CniResult;
use cni_types::version::{self, PluginInfo};

use super::{
    CniConfig, GcArgs, Net, NetworkAttachment, RuntimeConf, base_config, cached_config_error,
};
use crate::Error;
use crate::cache::Cached;

impl CniConfig {
    /// GC (spec 1.1.0): DEL of every cached attachment of this network that is not in
    /// `args` (all of them when `args` is `None`), then GC of every plugin (from
    /// 1.1.0). Goes on after errors and returns them all.
    pub fn gc_network_list(&self, list: &NetConfList, args: Option<&GcArgs>) -> Result<(), Error> {
        if list.disable_gc {
            return Ok(());
        }
        let mut errors = Vec::new();
        let is_valid = |entry: &crate::cache::CacheEntry| {
            args.is_some_and(|a| {
                a.valid_attachments
                    .iter()
                    .any(|v| v.container_id == entry.container_id && v.ifname == entry.ifname)
            })
        };
        for entry in self.cache.entries(None) {
            if entry.network_name != list.name || is_valid(&entry) {
                continue;
            }
            let rt = RuntimeConf {
                container_id: entry.container_id.clone(),
                netns: entry.netns.clone(),
                ifname: entry.ifname.clone(),
                args: entry.cni_args.clone(),
                capability_args: entry.capability_args.clone(),
            };
            if let Err(e) = self.del_network_list(list, &rt) {
                errors.push(Error::context(
                    format!(
                        "failed to delete stale attachment {} {}",
                        entry.container_id, entry.ifname
                    ),
                    e,
                ));
            }
        }
        let net = Net::list(list);
        if net.at_least("1.1.0")? {
            for plugin in &list.plugins {
                if let Err(e) = self.gc_one(&net, plugin, args) {
                    errors.push(Error::context(
                        format!("failed to GC plugin {}", plugin.plugin_type),
                        e,
                    ));
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Several(errors)),
        }
    }

    fn gc_one(&self, net: &Net, plugin: &PluginConf, args: Option<&GcArgs>) -> Result<(), Error> {
        let binary = self.find(&plugin.plugin_type)?;
        let mut config = base_config(net, plugin);
        if let Some(args) = args {
            let valid = serde_json::to_value(&args.valid_attachments)
                .map_err(|e| Error::Config(e.to_string()))?;
            // The spec's key, and the one the spec first printed (cni#1101).
            config.insert("cni.dev/valid-attachments".into(), valid.clone());
            config.insert("cni.dev/attachments".into(), valid);
        }
        let stdin = serde_json::to_vec(&config).map_err(|e| Error::Config(e.to_string()))?;
        self.exec(&binary, Command::Gc, &RuntimeConf::default(), &stdin)
            .map(drop)
    }

    /// STATUS (spec 1.1.0): asks each plugin, in order, whether it can serve ADD. The
    /// first error is returned as the plugin gave it, so its code (50, 51) is kept.
    /// Lists older than 1.1.0 are always ready.
    pub fn get_status_network_list(&self, list: &NetConfList) -> Result<(), Error> {
        let net = Net::list(list);
        if !net.at_least("1.1.0")? {
            return Ok(());
        }
        for plugin in &list.plugins {
            let binary = self.find(&plugin.plugin_type)?;
            let stdin = serde_json::to_vec(&base_config(&net, plugin))
                .map_err(|e| Error::Config(e.to_string()))?;
            self.exec(&binary, Command::Status, &RuntimeConf::default(), &stdin)?;
        }
        Ok(())
    }

    /// Asks a plugin which spec versions it supports, with upstream's fallbacks for
    /// plugins older than VERSION (they answer `unknown CNI_COMMAND: VERSION`).
    pub fn get_version_info(&self, plugin_type: &str) -> Result<PluginInfo, Error> {
        let binary = self.find(plugin_type)?;
        // Old plugins insisted on these even for VERSION.
        let env = [
            ("CNI_COMMAND", "VERSION"),
            ("CNI_CONTAINERID", ""),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
            ("CNI_ARGS", ""),
            ("CNI_PATH", "dummy"),
        ];
        let stdin = format!(r#"{{"cniVersion":{:?}}}"#, version::CURRENT);
        match invoke::exec_with_timeout(&binary, &env, stdin.as_bytes(), self.timeout) {
            Ok(stdout) => PluginInfo::decode(&stdout).map_err(Error::Config),
            Err(e) if e.msg == "unknown CNI_COMMAND: VERSION" => Ok(PluginInfo::legacy()),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks that every plugin of the list exists and supports the list's version.
    /// Returns the capabilities the plugins declare.
    pub fn validate_network_list(&self, list: &NetConfList) -> Result<Vec<String>, Error> {
        let mut errors = Vec::new();
        let mut capabilities: Vec<String> = Vec::new();
        for plugin in &list.plugins {
            if let Err(e) = self.validate_plugin(plugin, &list.cni_version) {
                errors.push(e);
            }
            for (capability, enabled) in &plugin.capabilities {
                if *enabled && !capabilities.contains(capability) {
                    capabilities.push(capability.clone());
                }
            }
        }
        if errors.is_empty() {
            Ok(capabilities)
        } else {
            Err(Error::Invalid(errors))
        }
    }

    /// [`validate_network_list`](Self::validate_network_list) for one plugin configuration.
    pub fn validate_network(&self, plugin: &PluginConf) -> Result<Vec<String>, Error> {
        self.validate_plugin(plugin, &plugin.cni_version)?;
        Ok(plugin
            .capabilities
            .iter()
            .filter(|(_, enabled)| **enabled)
            .map(|(c, _)| c.clone())
            .collect())
    }

    fn validate_plugin(&self, plugin: &PluginConf, list_version: &str) -> Result<(), Error> {
        let info = self.get_version_info(&plugin.plugin_type)?;
        let wanted = version::or_default(list_version);
        if !info.supported_versions.iter().any(|v| v == wanted) {
            return Err(Error::Config(format!(
                "plugin {} does not support config version {wanted:?}",
                plugin.plugin_type
            )));
        }
        Ok(())
    }

    /// The cached ADD result of an attachment, converted to the list's version;
    /// `None` when nothing is cached.
    pub fn get_network_list_cached_result(
        &self,
        list: &NetConfList,
        rt: &RuntimeConf,
    ) -> Result<Option<CniResult>, Error> {
        self.cached_result(&Net::list(list), rt)
    }

    /// The configuration bytes cached at ADD, and `rt` with the cached `CNI_ARGS` and
    /// capability arguments; `None` when nothing is cached.
    pub fn get_network_list_cached_config(
        &self,
        list: &NetConfList,
        rt: &RuntimeConf,
    ) -> Result<Option<(Vec<u8>, RuntimeConf)>, Error> {
        let cached = match self.cache.read(&list.name, rt)? {
            None => return Ok(None),
            Some(Cached::Entry(entry)) => entry,
            Some(Cached::LegacyResult(bytes)) => {
                return Err(Error::Cache(cached_config_error(&list.name, &bytes)));
            }
        };
        let mut rt = rt.clone();
        if !cached.cni_args.is_empty() {
            rt.args = cached.cni_args;
        }
        rt.capability_args = cached.capability_args;
        Ok(Some((cached.config, rt)))
    }

    /// The attachments in the cache, sorted; only `container_id`'s if given.
    pub fn get_cached_attachments(&self, container_id: Option<&str>) -> Vec<NetworkAttachment> {
        self.cache
            .entries(container_id.filter(|id| !id.is_empty()))
            .into_iter()
            .map(|e| NetworkAttachment {
                container_id: e.container_id,
                network: e.network_name,
                ifname: e.ifname,
                config: e.config,
                netns: e.netns,
                cni_args: e.cni_args,
                capability_args: e.capability_args,
            })
            .collect()
    }

    pub(super) fn cached_result(
        &self,
        net: &Net,
        rt: &RuntimeConf,
    ) -> Result<Option<CniResult>, Error> {
        let bytes = match self.cache.read(net.name, rt)? {
            None => return Ok(None),
            Some(Cached::Entry(entry)) => match entry.result {
                None => return Ok(None),
                Some(result) => serde_json::to_vec(&result).unwrap_or_default(),
            },
            Some(Cached::LegacyResult(bytes)) => bytes,
        };
        let result = CniResult::from_slice(&bytes).map_err(|e| Error::Cache(e.to_string()))?;
        let version = version::or_default(net.version);
        result.convert(version).map(Some).map_err(|e| {
            Error::Cache(format!(
                "failed to convert cached result to config version {version:?}: {e}"
            ))
        })
    }
}
