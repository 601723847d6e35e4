//! Loading configurations from a directory, case by case as upstream's conf tests.

use std::path::Path;

use libcni::Error;
use libcni::conf::{load_all, load_network_conf};

fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

fn types(list: &libcni::NetConfList) -> Vec<&str> {
    list.plugins
        .iter()
        .map(|p| p.plugin_type.as_str())
        .collect()
}

#[test]
fn missing_or_empty_directories_have_no_configs() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("nope");
    assert_eq!(
        load_network_conf(&missing, "n"),
        Err(Error::NoConfigsFound(missing.clone()))
    );
    assert_eq!(
        load_network_conf(&missing, "n")
            .expect_err("none")
            .to_string(),
        format!("no net configurations found in {}", missing.display())
    );
    write(dir.path(), "README", "not a config");
    assert_eq!(
        load_network_conf(dir.path(), "n"),
        Err(Error::NoConfigsFound(dir.path().to_path_buf()))
    );
}

#[test]
fn single_plugin_files_are_wrapped_into_lists() {
    let dir = tempfile::tempdir().expect("dir");
    write(
        dir.path(),
        "10-a.conf",
        r#"{"cniVersion":"0.4.0","name":"a","type":"bridge","capabilities":{"portMappings":true}}"#,
    );
    write(
        dir.path(),
        "20-b.json",
        r#"{"cniVersion":"1.0.0","name":"b","type":"ptp"}"#,
    );
    let a = load_network_conf(dir.path(), "a").expect("a");
    assert_eq!((a.name.as_str(), a.cni_version.as_str()), ("a", "0.4.0"));
    assert_eq!(types(&a), ["bridge"]);
    assert_eq!(a.plugins[0].capabilities.get("portMappings"), Some(&true));
    let bytes: serde_json::Value = serde_json::from_slice(&a.bytes).expect("list bytes");
    assert_eq!(
        bytes["plugins"][0]["type"], "bridge",
        "the cached bytes are a list"
    );
    assert_eq!(
        types(&load_network_conf(dir.path(), "b").expect("b")),
        ["ptp"]
    );
    assert_eq!(
        load_network_conf(dir.path(), "c")
            .expect_err("no c")
            .to_string(),
        format!(
            "no net configuration with name \"c\" in {}",
            dir.path().display()
        )
    );
}

#[test]
fn lists_win_over_single_files_and_byte_order_decides() {
    let dir = tempfile::tempdir().expect("dir");
    write(
        dir.path(),
        "00-net.conf",
        r#"{"name":"net","type":"single"}"#,
    );
    write(
        dir.path(),
        "B.conflist",
        r#"{"name":"net","cniVersion":"1.0.0","plugins":[{"type":"second"}]}"#,
    );
    write(
        dir.path(),
        "A.conflist",
        r#"{"name":"net","cniVersion":"1.0.0","plugins":[{"type":"first"}]}"#,
    );
    write(
        dir.path(),
        "a.conflist",
        r#"{"name":"net","cniVersion":"1.0.0","plugins":[{"type":"lowercase"}]}"#,
    );
    let net = load_network_conf(dir.path(), "net").expect("net");
    assert_eq!(
        types(&net),
        ["first"],
        "A < B < a in byte order; lists first"
    );
    assert_eq!(
        net.bytes, br#"{"name":"net","cniVersion":"1.0.0","plugins":[{"type":"first"}]}"#,
        "bytes as in the file"
    );
    let all = load_all(dir.path()).expect("all");
    assert_eq!(all.len(), 1, "one network, listed where it wins");
    assert!(all[0].0.ends_with("A.conflist"));
}

#[test]
fn any_broken_file_stops_the_search() {
    let dir = tempfile::tempdir().expect("dir");
    write(
        dir.path(),
        "10-good.conflist",
        r#"{"name":"good","plugins":[{"type":"x"}]}"#,
    );
    write(dir.path(), "20-bad.conflist", "{");
    let e = load_network_conf(dir.path(), "other").expect_err("broken list");
    assert!(
        e.to_string()
            .starts_with("error parsing configuration list: EOF"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("20-bad.conflist")).expect("rm");
    write(dir.path(), "30-bad.conf", "{");
    let e = load_network_conf(dir.path(), "other").expect_err("broken conf");
    assert!(
        e.to_string()
            .starts_with("error parsing configuration: EOF"),
        "{e}"
    );
    assert_eq!(
        load_network_conf(dir.path(), "good").map(|l| l.name),
        Ok("good".into()),
        "a matching list is found before the broken single file is read"
    );
    write(dir.path(), "40-notype.json", r#"{"name":"x"}"#);
    std::fs::remove_file(dir.path().join("30-bad.conf")).expect("rm");
    assert_eq!(
        load_network_conf(dir.path(), "x")
            .expect_err("no type")
            .to_string(),
        "error parsing configuration: missing 'type'"
    );
}

#[test]
fn directories_and_other_extensions_are_ignored() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("sub.conflist")).expect("dir named like a list");
    write(
        dir.path(),
        "sub/nested.conflist",
        r#"{"name":"nested","plugins":[{"type":"x"}]}"#,
    );
    write(
        dir.path(),
        "net.CONFLIST",
        r#"{"name":"upper","plugins":[{"type":"x"}]}"#,
    );
    write(
        dir.path(),
        "net.conflist~",
        r#"{"name":"backup","plugins":[{"type":"x"}]}"#,
    );
    assert_eq!(
        load_network_conf(dir.path(), "nested"),
        Err(Error::NoConfigsFound(dir.path().to_path_buf()))
    );
}

#[test]
fn plugins_from_the_network_subdirectory() {
    let dir = tempfile::tempdir().expect("dir");
    let list = |extra: &str| format!(r#"{{"name":"net","cniVersion":"1.1.0"{extra}}}"#);
    // Inlined plugins first, then <dir>/<name>/*.conf in name order; other files ignored.
    write(
        dir.path(),
        "net.conflist",
        &list(r#","plugins":[{"type":"inline"}]"#),
    );
    write(dir.path(), "net/20-b.conf", r#"{"type":"second"}"#);
    write(dir.path(), "net/10-a.conf", r#"{"type":"first"}"#);
    write(dir.path(), "net/30-c.json", r#"{"type":"ignored"}"#);
    let net = load_network_conf(dir.path(), "net").expect("net");
    assert_eq!(types(&net), ["inline", "first", "second"]);
    assert_eq!(
        net.bytes,
        list(r#","plugins":[{"type":"inline"}]"#).as_bytes(),
        "bytes stay the main file's"
    );

    // loadOnlyInlinedPlugins: the sub-directory is not read.
    write(
        dir.path(),
        "net.conflist",
        &list(r#","loadOnlyInlinedPlugins":true,"plugins":[{"type":"inline"}]"#),
    );
    assert_eq!(
        types(&load_network_conf(dir.path(), "net").expect("net")),
        ["inline"]
    );
    write(
        dir.path(),
        "net.conflist",
        &list(r#","loadOnlyInlinedPlugins":"true""#),
    );
    assert_eq!(
        load_network_conf(dir.path(), "net")
            .expect_err("needs plugins")
            .to_string(),
        "error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key"
    );

    // No inlined plugins: the sub-directory alone is fine, an empty one is not.
    write(dir.path(), "net.conflist", &list(""));
    assert_eq!(
        types(&load_network_conf(dir.path(), "net").expect("net")),
        ["first", "second"]
    );
    for f in ["10-a.conf", "20-b.conf"] {
        std::fs::remove_file(dir.path().join("net").join(f)).expect("rm");
    }
    assert_eq!(
        load_network_conf(dir.path(), "net")
            .expect_err("empty")
            .to_string(),
        "no plugin configs found"
    );
    std::fs::remove_dir_all(dir.path().join("net")).expect("rm");
    assert_eq!(
        load_network_conf(dir.path(), "net")
            .expect_err("absent")
            .to_string(),
        "no plugin configs found"
    );
    write(dir.path(), "net/bad.conf", r#"{"name":"x"}"#);
    assert_eq!(
        load_network_conf(dir.path(), "net")
            .expect_err("bad sub-plugin")
            .to_string(),
        "error parsing configuration: missing 'type'"
    );
}

#[test]
fn load_all_lists_every_network_once() {
    let dir = tempfile::tempdir().expect("dir");
    write(
        dir.path(),
        "10-a.conflist",
        r#"{"name":"a","cniVersion":"1.0.0","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
    );
    write(
        dir.path(),
        "20-b.conf",
        r#"{"name":"b","cniVersion":"0.4.0","type":"ptp"}"#,
    );
    write(dir.path(), "30-a.conf", r#"{"name":"a","type":"hidden"}"#);
    let all = load_all(dir.path()).expect("all");
    let names: Vec<(&str, Vec<&str>)> = all
        .iter()
        .map(|(_, l)| (l.name.as_str(), types(l)))
        .collect();
    assert_eq!(
        names,
        [("a", vec!["bridge", "portmap"]), ("b", vec!["ptp"])]
    );
}
