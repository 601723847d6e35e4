//! `CNI_ARGS` (`K=V;K2=V2`), parsed as upstream's `types.LoadArgs` fills a struct: keys
//! are matched case-sensitively against the names a plugin knows (Go field names such
//! as `IP`, `MAC`, `IgnoreUnknown`), and an unknown key is an error unless
//! `IgnoreUnknown` is true.

use std::collections::BTreeMap;

/// The key every plugin knows (upstream `types.CommonArgs`).
pub const IGNORE_UNKNOWN: &str = "IgnoreUnknown";

/// Parses `CNI_ARGS` and keeps the pairs whose key is in `known`.
///
/// Errors, with upstream's texts: a pair that does not split into exactly two parts on
/// `=`; an `IgnoreUnknown` value that is not a boolean; unknown keys without
/// `IgnoreUnknown`.
pub fn load(cni_args: &str, known: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut found = BTreeMap::new();
    if cni_args.is_empty() {
        return Ok(found);
    }
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in cni_args.split(';') {
        let parts: Vec<&str> = pair.split('=').collect();
        let [key, value] = parts[..] else {
            return Err(format!("ARGS: invalid pair {pair:?}"));
        };
        if key == IGNORE_UNKNOWN {
            ignore_unknown = parse_bool(value)
                .map_err(|e| format!("ARGS: error parsing value of pair {pair:?}: {e}"))?;
        } else if known.contains(&key) {
            found.insert(key.to_string(), value.to_string());
        } else {
            unknown.push(format!("{pair:?}"));
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(format!("ARGS: unknown args [{}]", unknown.join(" ")));
    }
    Ok(found)
}

/// Go's `UnmarshallableBool`: `1`/`true` and `0`/`false`, any case.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("boolean unmarshal error: invalid input {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_are_kept() {
        let got = load("IP=10.0.0.5;MAC=aa:bb:cc:dd:ee:ff", &["IP", "MAC"]).expect("parses");
        assert_eq!(got.get("IP").map(String::as_str), Some("10.0.0.5"));
        assert_eq!(
            got.get("MAC").map(String::as_str),
            Some("aa:bb:cc:dd:ee:ff")
        );
        assert!(load("", &[]).expect("empty is fine").is_empty());
    }

    #[test]
    fn keys_are_case_sensitive_and_unknown_keys_fail() {
        assert_eq!(
            load("ip=1.2.3.4;K8S_POD_NAME=x", &["IP"]),
            Err(r#"ARGS: unknown args ["ip=1.2.3.4" "K8S_POD_NAME=x"]"#.into())
        );
    }

    #[test]
    fn ignore_unknown_anywhere_in_the_list() {
        let got = load("K8S_POD_NAME=x;IP=1.2.3.4;IgnoreUnknown=True", &["IP"]).expect("ignored");
        assert_eq!(got.len(), 1);
        assert!(load("IgnoreUnknown=0;FOO=1", &[]).is_err());
        assert_eq!(
            load("IgnoreUnknown=yes", &[]),
            Err(r#"ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes"#.into())
        );
    }

    #[test]
    fn malformed_pairs() {
        assert_eq!(
            load("IP", &["IP"]),
            Err(r#"ARGS: invalid pair "IP""#.into())
        );
        assert_eq!(
            load("IP=a=b", &["IP"]),
            Err(r#"ARGS: invalid pair "IP=a=b""#.into())
        );
        assert_eq!(
            load("IP=1;", &["IP"]),
            Err(r#"ARGS: invalid pair """#.into())
        );
    }
}
