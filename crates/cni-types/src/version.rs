//! Spec versions: the known set, parsing and ordering, and the VERSION reply.

use serde::{Deserialize, Serialize};

/// Every spec version, oldest first (upstream `version.All`).
pub const ALL: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version; what VERSION replies carry in `cniVersion`.
pub const CURRENT: &str = "1.1.0";

/// Versions starting from `first` (inclusive), for plugins that need a minimum
/// (bandwidth from 0.3.0, vrf from 0.3.1, firewall from 0.4.0).
pub fn starting_from(first: &str) -> &'static [&'static str] {
    let start = ALL.iter().position(|v| *v == first).unwrap_or(ALL.len());
    &ALL[start..]
}

/// The version a missing or empty `cniVersion` means.
pub fn or_default(version: &str) -> &str {
    if version.is_empty() { "0.1.0" } else { version }
}

/// Parses `major[.minor[.micro]]` as upstream: empty means 0.1.0, missing parts are 0,
/// each part is a (possibly negative) decimal integer, four parts are too many.
pub fn parse(version: &str) -> Result<(i64, i64, i64), String> {
    let version = or_default(version);
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() > 3 {
        return Err(format!("invalid version {version:?}: too many parts"));
    }
    let mut numbers = [0i64; 3];
    for (i, (part, name)) in parts.iter().zip(["major", "minor", "micro"]).enumerate() {
        numbers[i] = part.parse::<i64>().map_err(|_| {
            format!(
                "failed to convert {name} version part {part:?}: strconv.Atoi: parsing {part:?}: invalid syntax"
            )
        })?;
    }
    Ok((numbers[0], numbers[1], numbers[2]))
}

/// `a >= b` by numeric parts.
pub fn greater_than_or_equal(a: &str, b: &str) -> Result<bool, String> {
    Ok(parse(a)? >= parse(b)?)
}

/// `a > b` by numeric parts.
pub fn greater_than(a: &str, b: &str) -> Result<bool, String> {
    Ok(parse(a)? > parse(b)?)
}

/// The VERSION reply of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

impl PluginInfo {
    pub fn new(supported: &[&str]) -> Self {
        PluginInfo {
            cni_version: CURRENT.to_string(),
            supported_versions: supported.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// What upstream's skel prints: compact JSON and a newline.
    pub fn to_json_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Decodes a VERSION reply with upstream's fallbacks: a reply without
    /// `supportedVersions` from a 0.2.0 plugin means 0.1.0 and 0.2.0.
    pub fn decode(bytes: &[u8]) -> Result<PluginInfo, String> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "cniVersion", default)]
            cni_version: String,
            #[serde(rename = "supportedVersions", default)]
            supported_versions: Option<Vec<String>>,
        }
        let raw: Raw =
            crate::gojson::from_slice(bytes).map_err(|e| format!("decoding version info: {e}"))?;
        if raw.cni_version.is_empty() {
            return Err("decoding version info: missing field cniVersion".into());
        }
        match raw.supported_versions {
            Some(v) if !v.is_empty() => Ok(PluginInfo {
                cni_version: raw.cni_version,
                supported_versions: v,
            }),
            _ if raw.cni_version == "0.2.0" => Ok(PluginInfo {
                cni_version: raw.cni_version,
                supported_versions: vec!["0.1.0".into(), "0.2.0".into()],
            }),
            _ => Err("decoding version info: missing field supportedVersions".into()),
        }
    }

    /// What a plugin that predates VERSION supports (it answers
    /// `unknown CNI_COMMAND: VERSION`).
    pub fn legacy() -> Self {
        PluginInfo {
            cni_version: "0.1.0".into(),
            supported_versions: vec!["0.1.0".into()],
        }
    }

    /// Upstream's reconciler: the config version must be listed exactly.
    pub fn check(&self, config_version: &str) -> Result<(), String> {
        if self.supported_versions.iter().any(|v| v == config_version) {
            return Ok(());
        }
        let listed: Vec<String> = self
            .supported_versions
            .iter()
            .map(|v| format!("{v:?}"))
            .collect();
        Err(format!(
            "config is {config_version:?}, plugin supports [{}]",
            listed.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_compare_like_upstream() {
        assert_eq!(parse(""), Ok((0, 1, 0)));
        assert_eq!(parse("1"), Ok((1, 0, 0)));
        assert_eq!(parse("1.0"), Ok((1, 0, 0)));
        assert_eq!(parse("0.-42.0"), Ok((0, -42, 0)));
        assert_eq!(
            parse("1.2.3.4"),
            Err("invalid version \"1.2.3.4\": too many parts".into())
        );
        assert_eq!(
            parse("1.x.0"),
            Err("failed to convert minor version part \"x\": strconv.Atoi: parsing \"x\": invalid syntax".into())
        );
        assert_eq!(greater_than_or_equal("0.4.0", "0.4.0"), Ok(true));
        assert_eq!(greater_than_or_equal("0.3.1", "0.4.0"), Ok(false));
        assert_eq!(greater_than_or_equal("1.10.0", "1.9.0"), Ok(true));
        assert_eq!(greater_than("", "0.1.0"), Ok(false));
        assert!(greater_than_or_equal("a", "0.1.0").is_err());
        assert_eq!(starting_from("0.4.0"), &["0.4.0", "1.0.0", "1.1.0"]);
    }

    #[test]
    fn version_reply_round_trip_and_fallbacks() {
        let info = PluginInfo::new(&ALL);
        assert_eq!(
            info.to_json_line(),
            "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n"
        );
        assert_eq!(PluginInfo::decode(info.to_json_line().as_bytes()), Ok(info));
        let old = PluginInfo::decode(br#"{"cniVersion":"0.2.0"}"#).expect("0.2.0 fallback");
        assert_eq!(old.supported_versions, ["0.1.0", "0.2.0"]);
        assert_eq!(
            PluginInfo::decode(br#"{"cniVersion":"0.3.0"}"#),
            Err("decoding version info: missing field supportedVersions".into())
        );
        assert_eq!(
            PluginInfo::decode(br#"{"supportedVersions":["0.3.0"]}"#),
            Err("decoding version info: missing field cniVersion".into())
        );
    }

    #[test]
    fn reconcile_is_an_exact_string_match() {
        let info = PluginInfo::new(&["0.4.0", "1.0.0"]);
        assert!(info.check("1.0.0").is_ok());
        assert_eq!(
            info.check("1.0"),
            Err("config is \"1.0\", plugin supports [\"0.4.0\" \"1.0.0\"]".into())
        );
    }
}
