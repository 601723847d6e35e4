//! Golden results: every conversion pair among the seven spec versions, from sources of
//! each family, compared byte for byte with hand-written vectors (spec "Version
//! considerations", upstream's conversion rules).

use cni_types::result::{Result, ResultError};
use cni_types::version::ALL;

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim_end()
        .to_string()
}

/// The golden text with its `cniVersion` set to `version`.
fn relabel(text: &str, version: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("    \"cniVersion\": ") {
            out.push(format!("    \"cniVersion\": \"{version}\","));
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\n")
}

fn family(version: &str) -> &'static str {
    match version {
        "0.1.0" | "0.2.0" => "0.2.x",
        "0.3.0" | "0.3.1" | "0.4.0" => "0.4.x",
        _ => "1.x",
    }
}

#[test]
fn every_pair_of_versions_converts_as_the_spec_says() {
    // (source file, its family, expected file per target family)
    let cases = [
        (
            "full-1.x.json",
            "1.x",
            [
                ("1.x", "full-1.x.json"),
                ("0.4.x", "full-as-0.4.x.json"),
                ("0.2.x", "full-as-0.2.x.json"),
            ],
        ),
        (
            "full-as-0.4.x.json",
            "0.4.x",
            [
                ("1.x", "full-0.4.x-as-1.x.json"),
                ("0.4.x", "full-as-0.4.x.json"),
                ("0.2.x", "full-as-0.2.x.json"),
            ],
        ),
        (
            "small-0.2.x.json",
            "0.2.x",
            [
                ("1.x", "small-as-1.x.json"),
                ("0.4.x", "small-as-0.4.x.json"),
                ("0.2.x", "small-0.2.x.json"),
            ],
        ),
    ];
    let mut checked = 0;
    for (source, source_family, expected) in cases {
        for from in ALL.iter().filter(|v| family(v) == source_family) {
            let input = relabel(&golden(source), from);
            let result = Result::from_slice(input.as_bytes())
                .unwrap_or_else(|e| panic!("{source} as {from}: {e}"));
            // Reading and printing again gives the same bytes.
            assert_eq!(
                result.to_json_pretty(),
                input,
                "{source} as {from} round trip"
            );
            for to in ALL {
                let (_, file) = expected
                    .iter()
                    .find(|(f, _)| *f == family(to))
                    .expect("family listed");
                let want = relabel(&golden(file), to);
                let got = result
                    .convert(to)
                    .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert_eq!(got.version(), to);
                assert_eq!(got.to_json_pretty(), want, "{source}: {from} -> {to}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 7 * 7, "every pair once");
}

#[test]
fn an_empty_target_version_means_0_1_0() {
    let r = Result::from_slice(golden("small-as-1.x.json").as_bytes()).expect("parses");
    assert_eq!(r.convert("").expect("converts").version(), "0.1.0");
}

#[test]
fn no_ip_addresses_cannot_go_to_0_2_0() {
    // loopback's result without prevResult has no address in the 0.2.0 sense
    // (upstream plugins#381).
    let r = Result::from_slice(br#"{"cniVersion":"1.0.0","interfaces":[{"name":"lo"}]}"#)
        .expect("parses");
    for to in ["0.1.0", "0.2.0"] {
        let err = r.convert(to).expect_err("no IPs");
        assert_eq!(err, ResultError::NoValidIps);
        assert_eq!(err.to_string(), "cannot convert: no valid IP addresses");
    }
    // 0.4.0 IPs without `version` are not IPs to a 0.2.0 reader either.
    let r = Result::from_slice(br#"{"cniVersion":"0.4.0","ips":[{"address":"10.0.0.2/24"}]}"#)
        .expect("parses");
    assert_eq!(r.convert("0.2.0"), Err(ResultError::NoValidIps));
    assert!(r.convert("1.0.0").is_ok());
}

#[test]
fn interface_index_zero_is_written_and_absent_is_not() {
    let r = Result::from_slice(br#"{"cniVersion":"0.4.0","ips":[{"version":"4","interface":0,"address":"10.0.0.2/24"},{"version":"4","address":"10.0.0.3/24"}]}"#)
        .expect("parses");
    for to in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let json = r.convert(to).expect("converts").to_json_pretty();
        assert_eq!(json.matches("\"interface\": 0").count(), 1, "{to}: {json}");
        assert_eq!(json.matches("\"interface\"").count(), 1, "{to}: {json}");
    }
}

#[test]
fn dns_is_always_written_before_1_0_and_omitted_when_empty_after() {
    let r = Result::from_slice(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}"#)
        .expect("parses");
    assert!(!r.to_json_pretty().contains("dns"));
    assert!(
        r.convert("0.4.0")
            .expect("converts")
            .to_json_pretty()
            .contains("\"dns\": {}")
    );
    assert!(
        r.convert("0.2.0")
            .expect("converts")
            .to_json_pretty()
            .contains("\"dns\": {}")
    );
}

#[test]
fn ipv4_mapped_addresses_count_as_ipv4() {
    let r =
        Result::from_slice(br#"{"cniVersion":"1.0.0","ips":[{"address":"::ffff:10.0.0.2/120"}]}"#)
            .expect("parses");
    assert!(
        r.convert("0.4.0")
            .expect("converts")
            .to_json_pretty()
            .contains("\"version\": \"4\"")
    );
}

#[test]
fn reading_errors_have_upstream_texts() {
    let err = |json: &str| {
        Result::from_slice(json.as_bytes())
            .expect_err(json)
            .to_string()
    };
    assert_eq!(
        err(r#"{"cniVersion":"0.4567.0"}"#),
        "unsupported CNI result version \"0.4567.0\""
    );
    assert!(err("abc").starts_with("decoding version from network config: "));
    assert!(
        err(r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.300/24"}]}"#)
            .contains("invalid CIDR address: 10.0.0.300/24")
    );
    let wrong_family = Result::from_value_as("0.4.0", serde_json::json!({"cniVersion": "1.0.0"}))
        .expect_err("family");
    assert_eq!(
        wrong_family.to_string(),
        "result type supports [0.3.0 0.3.1 0.4.0] but unmarshalled CNIVersion is \"1.0.0\""
    );
    let r = Result::from_slice(br#"{"cniVersion":"1.0.0"}"#).expect("parses");
    assert_eq!(
        r.convert("0.5.0").expect_err("unknown").to_string(),
        "no converter for CNI result version 1.0.0 to 0.5.0"
    );
}

#[test]
fn unversioned_results_take_their_family_newest_version() {
    let r = Result::from_value_as(
        "0.3.1",
        serde_json::json!({"cniVersion": "0.3.1", "ips": []}),
    )
    .expect("parses");
    let mut unversioned = r.clone();
    if let Result::V040(inner) = &mut unversioned {
        inner.cni_version.clear();
    }
    assert_eq!(
        unversioned.convert("1.0.0").expect("converts").version(),
        "1.0.0"
    );
}

#[test]
fn prev_result_parsing_follows_the_config_version() {
    use cni_types::result::parse_prev_result;
    let prev = serde_json::json!({"ips": [{"address": "10.0.0.2/24"}]});
    let r = parse_prev_result("1.0.0", prev).expect("version taken from config");
    assert_eq!(r.version(), "1.0.0");
    let prev = serde_json::json!({"cniVersion": "0.4.0", "ips": []});
    assert_eq!(
        parse_prev_result("1.0.0", prev).expect_err("family mismatch"),
        "could not parse prevResult: result type supports [1.0.0 1.1.0] but unmarshalled CNIVersion is \"0.4.0\""
    );
}

#[test]
fn result_keys_fold_case_like_go() {
    let r = Result::from_slice(
        br#"{"cniVersion":"1.0.0","IPs":[{"Address":"10.0.0.2/24","GATEWAY":"10.0.0.1"}]}"#,
    )
    .expect("parses");
    assert!(r.to_json_pretty().contains("\"gateway\": \"10.0.0.1\""));
}

/// Spec 1.1's interface fields (`mtu`, `socketPath`, `pciID`) are kept in the 1.x
/// family (as upstream's types100, which serves 1.0.0 and 1.1.0 alike) and converted
/// away for 0.4.0 and older.
#[test]
fn spec_1_1_interface_fields_are_dropped_below_the_1_x_family() {
    let result = cni_types::result::Result::from_slice(
        br#"{"cniVersion":"1.1.0","interfaces":[{"name":"net1","mtu":1400,
            "socketPath":"/run/vhost.sock","pciID":"0000:01:00.0"}],
            "ips":[{"address":"10.1.0.5/24","interface":0}]}"#,
    )
    .expect("result");
    let text = |version: &str| result.convert(version).expect("convert").to_json_pretty();
    for field in ["\"mtu\": 1400", "socketPath", "pciID"] {
        for kept in ["1.1.0", "1.0.0"] {
            let shown = text(kept);
            assert!(shown.contains(field), "{kept}: {shown}");
        }
        for older in ["0.4.0", "0.3.1", "0.2.0"] {
            let shown = text(older);
            assert!(!shown.contains(field), "{older}: {shown}");
        }
    }
}
