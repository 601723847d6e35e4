//! Network configurations: the plugin configuration a plugin receives on stdin
//! ([`PluginConf`]) and the network configuration list a runtime loads
//! ([`NetConfList`]). Both keep the whole JSON object they came from, so unknown keys
//! survive and can be passed on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::result::Dns;

/// The keys every plugin configuration may carry (spec "Plugin configuration objects").
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PluginConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    pub capabilities: BTreeMap<String, bool>,
    pub ipam: Option<Ipam>,
    pub dns: Dns,
    #[serde(rename = "prevResult")]
    pub prev_result: Option<Value>,
    /// An object, or absent: another JSON type is a config error, as upstream's
    /// typed decoding makes it.
    #[serde(rename = "runtimeConfig")]
    pub runtime_config: Option<Map<String, Value>>,
    pub args: Option<Map<String, Value>>,
    /// GC: the attachments that are still valid (spec 1.1.0 "GC").
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<GcAttachment>>,
    /// The whole object as received, unknown keys included.
    #[serde(skip)]
    pub raw: Map<String, Value>,
}

/// The `ipam` object: its `type` names the IPAM plugin; the rest belongs to that plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Ipam {
    #[serde(rename = "type")]
    pub plugin_type: String,
}

/// A `{containerID, ifname}` pair in a GC request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Go's `%T` for a value decoded into `interface{}`, used in upstream's messages.
pub fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

impl PluginConf {
    /// Parses a plugin configuration; `type` is required (upstream
    /// `NetworkPluginConfFromBytes`).
    pub fn from_value(value: Value) -> Result<PluginConf, String> {
        let Value::Object(raw) = &value else {
            return Err(format!(
                "error parsing configuration: json: cannot unmarshal {} into Go value of type types.PluginConf",
                go_json_kind(&value)
            ));
        };
        let raw = raw.clone();
        let mut conf: PluginConf = crate::gojson::from_value(value)
            .map_err(|e| format!("error parsing configuration: {e}"))?;
        if conf.plugin_type.is_empty() {
            return Err("error parsing configuration: missing 'type'".into());
        }
        conf.raw = raw;
        Ok(conf)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<PluginConf, String> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("error parsing configuration: {e}"))?;
        PluginConf::from_value(value)
    }
}

fn go_json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A network configuration list (spec "Network configuration format").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetConfList {
    pub name: String,
    /// The version chosen from `cniVersion` and `cniVersions` (the newest known one).
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub load_only_inlined_plugins: bool,
    pub plugins: Vec<PluginConf>,
    /// The whole object as loaded, unknown keys included.
    pub raw: Map<String, Value>,
    /// The bytes the list was read from; runtimes cache them with each attachment
    /// (upstream `NetworkConfigList.Bytes`).
    pub bytes: Vec<u8>,
}

impl NetConfList {
    /// Parses a configuration list with upstream's rules and messages
    /// (`libcni.NetworkConfFromBytes`): string booleans, `cniVersions` selection
    /// capped at the newest spec version, and the checks on `plugins`.
    pub fn from_slice(bytes: &[u8]) -> Result<NetConfList, String> {
        let fail = |msg: String| format!("error parsing configuration list: {msg}");
        let raw: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| fail(e.to_string()))?;
        let name = match raw.get("name") {
            None => return Err(fail("no name".into())),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(fail(format!("invalid name type {}", go_type_name(other)))),
        };
        let mut cni_version = match raw.get("cniVersion") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(fail(format!(
                    "invalid cniVersion type {}",
                    go_type_name(other)
                )));
            }
        };
        if let Some(versions) = raw.get("cniVersions") {
            cni_version = select_version(versions, &cni_version).map_err(fail)?;
        }
        let read_bool = |key: &str| -> Result<bool, String> {
            match raw.get(key) {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    lower => Err(fail(format!("invalid value {lower:?} for {key}"))),
                },
                Some(other) => Err(fail(format!(
                    "invalid type {} for {key}",
                    go_type_name(other)
                ))),
            }
        };
        let mut list = NetConfList {
            name,
            cni_version,
            disable_check: read_bool("disableCheck")?,
            disable_gc: read_bool("disableGC")?,
            load_only_inlined_plugins: read_bool("loadOnlyInlinedPlugins")?,
            plugins: Vec::new(),
            raw: Map::new(),
            bytes: bytes.to_vec(),
        };
        match raw.get("plugins") {
            None if list.load_only_inlined_plugins => {
                return Err(fail(
                    "`loadOnlyInlinedPlugins` is true, and no 'plugins' key".into(),
                ));
            }
            None => {}
            Some(Value::Array(plugins)) if plugins.is_empty() => {
                return Err(fail("no plugins in list".into()));
            }
            Some(Value::Array(plugins)) => {
                for (i, plugin) in plugins.iter().enumerate() {
                    let conf = PluginConf::from_value(plugin.clone())
                        .map_err(|e| format!("failed to parse plugin config {i}: {e}"))?;
                    list.plugins.push(conf);
                }
            }
            Some(other) => {
                return Err(fail(format!(
                    "invalid 'plugins' type {}",
                    go_type_name(other)
                )));
            }
        }
        list.raw = raw;
        Ok(list)
    }

    /// Wraps a single plugin configuration (a `.conf` file) into a list, as upstream's
    /// `ConfListFromConf`.
    pub fn from_plugin(conf: PluginConf) -> NetConfList {
        let mut raw = Map::new();
        raw.insert("name".into(), Value::String(conf.name.clone()));
        raw.insert("cniVersion".into(), Value::String(conf.cni_version.clone()));
        raw.insert(
            "plugins".into(),
            Value::Array(vec![Value::Object(conf.raw.clone())]),
        );
        NetConfList {
            name: conf.name.clone(),
            cni_version: conf.cni_version.clone(),
            plugins: vec![conf],
            bytes: serde_json::to_vec(&raw).unwrap_or_default(),
            raw,
            ..Default::default()
        }
    }
}

/// `cniVersions`: every entry must parse; entries newer than this implementation are
/// dropped; `cniVersion` joins the candidates; the newest wins.
fn select_version(versions: &Value, cni_version: &str) -> Result<String, String> {
    use crate::version::{CURRENT, greater_than, parse};
    let Value::Array(entries) = versions else {
        // Upstream prints the type of its failed cast, which is always this.
        return Err("invalid type for cniVersions: []interface {}".into());
    };
    let mut candidates = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Value::String(v) = entry else {
            return Err(format!(
                "invalid type for cniVersions index {i}: {}",
                go_type_name(entry)
            ));
        };
        let newer = greater_than(v, CURRENT)
            .map_err(|e| format!("invalid cniVersions entry {v} at index {i}: {e}"))?;
        if !newer {
            candidates.push(v.clone());
        }
    }
    if !cni_version.is_empty() {
        let newer = greater_than(cni_version, CURRENT)
            .map_err(|e| format!("invalid cniVersion {cni_version}: {e}"))?;
        if !newer {
            candidates.push(cni_version.to_string());
        }
    }
    Ok(candidates
        .into_iter()
        .max_by_key(|v| parse(v).unwrap_or_default())
        .unwrap_or_else(|| cni_version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_keys_of_the_wrong_type_are_refused() {
        for bad in [
            r#"{"name":"n","type":"t","args":5}"#,
            r#"{"name":"n","type":"t","runtimeConfig":"x"}"#,
            r#"{"name":"n","type":"t","dns":[]}"#,
            r#"{"name":"n","type":"t","ipam":[]}"#,
            r#"{"name":"n","type":"t","capabilities":"all"}"#,
        ] {
            assert!(PluginConf::from_slice(bad.as_bytes()).is_err(), "{bad}");
        }
        let ok = PluginConf::from_slice(br#"{"name":"n","type":"t","args":null,"dns":null}"#);
        assert!(ok.is_ok(), "null keeps the default: {ok:?}");
    }

    #[test]
    fn plugin_conf_keeps_unknown_keys_and_folds_known_ones() {
        let conf = PluginConf::from_slice(
            br#"{"CNIVersion":"1.0.0","Name":"n","type":"bridge","IPAM":{"Type":"host-local"},"isGateway":true,
                 "Capabilities":{"portMappings":true},"prevResult":null}"#,
        )
        .expect("parses");
        assert_eq!(conf.cni_version, "1.0.0");
        assert_eq!(conf.name, "n");
        assert_eq!(
            conf.ipam.as_ref().map(|i| i.plugin_type.as_str()),
            Some("host-local")
        );
        assert_eq!(conf.capabilities.get("portMappings"), Some(&true));
        assert_eq!(conf.prev_result, None);
        assert_eq!(conf.raw.get("isGateway"), Some(&Value::Bool(true)));
        assert_eq!(
            PluginConf::from_slice(br#"{"name":"n"}"#),
            Err("error parsing configuration: missing 'type'".into())
        );
    }

    fn list(json: &str) -> Result<NetConfList, String> {
        NetConfList::from_slice(json.as_bytes())
    }

    #[test]
    fn version_selection() {
        let v = |json: &str| list(json).map(|l| l.cni_version);
        assert_eq!(
            v(r#"{"name":"n","cniVersions":["1.1.0","0.4.0","1.0.0"]}"#),
            Ok("1.1.0".into())
        );
        assert_eq!(
            v(r#"{"name":"n","cniVersions":["1.1.0","99.0.0"]}"#),
            Ok("1.1.0".into())
        );
        assert_eq!(
            v(r#"{"name":"n","cniVersion":"1.0.0","cniVersions":["0.1.0","0.4.0"]}"#),
            Ok("1.0.0".into())
        );
        assert_eq!(
            v(r#"{"name":"n","cniVersion":"1.2.3"}"#),
            Ok("1.2.3".into()),
            "used verbatim without cniVersions"
        );
        assert_eq!(v(r#"{"name":"n","cniVersions":[]}"#), Ok("".into()));
        assert!(
            v(r#"{"name":"n","cniVersions":["1.0.f"]}"#)
                .expect_err("bad entry")
                .starts_with(
                    "error parsing configuration list: invalid cniVersions entry 1.0.f at index 0: "
                )
        );
    }

    #[test]
    fn list_errors_have_upstream_texts() {
        for (json, err) in [
            (
                r#"{"cniVersion":"1.0.0"}"#,
                "error parsing configuration list: no name",
            ),
            (
                r#"{"name":1}"#,
                "error parsing configuration list: invalid name type float64",
            ),
            (
                r#"{"name":"n","cniVersion":true}"#,
                "error parsing configuration list: invalid cniVersion type bool",
            ),
            (
                r#"{"name":"n","disableCheck":"yes"}"#,
                "error parsing configuration list: invalid value \"yes\" for disableCheck",
            ),
            (
                r#"{"name":"n","disableGC":1}"#,
                "error parsing configuration list: invalid type float64 for disableGC",
            ),
            (
                r#"{"name":"n","plugins":{}}"#,
                "error parsing configuration list: invalid 'plugins' type map[string]interface {}",
            ),
            (
                r#"{"name":"n","plugins":[]}"#,
                "error parsing configuration list: no plugins in list",
            ),
            (
                r#"{"name":"n","loadOnlyInlinedPlugins":true}"#,
                "error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key",
            ),
            (
                r#"{"name":"n","plugins":[{"name":"x"}]}"#,
                "failed to parse plugin config 0: error parsing configuration: missing 'type'",
            ),
        ] {
            assert_eq!(list(json), Err(err.to_string()), "{json}");
        }
        assert!(
            list("{")
                .expect_err("eof")
                .starts_with("error parsing configuration list: EOF")
        );
    }

    #[test]
    fn string_booleans_and_plugins() {
        let l = list(r#"{"name":"n","cniVersion":"1.1.0","disableCheck":"TRUE","disableGC":false,"x":1,
                         "plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#)
        .expect("parses");
        assert!(l.disable_check && !l.disable_gc && !l.load_only_inlined_plugins);
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugins[1].plugin_type, "portmap");
        assert_eq!(l.raw.get("x"), Some(&Value::from(1)));
        assert!(
            list(r#"{"name":"n"}"#)
                .expect("plugins may come from a directory")
                .plugins
                .is_empty()
        );
    }
}
