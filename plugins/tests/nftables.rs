//! The nftables backends at the plugin level: rules `nft -f` wrote in upstream's
//! shapes are removed by our DEL; comments are cut or refused where upstream cuts or
//! refuses them; an explicit `nftables` backend needs no binary.

mod common;

use cni_testkit::{Call, Sandbox, require_root};
use common::{nft_ruleset, plugin, plugin_dir};
use serde_json::json;

fn sha16(text: &str) -> String {
    cni_net::netfilter::sha512_hex(text)[..16].to_string()
}

fn nft(sandbox: &Sandbox, script: &str) {
    use std::io::Write;
    let out = sandbox
        .host
        .run(|| {
            let mut child = std::process::Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("nft");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())
                .expect("write");
            child.wait_with_output().expect("nft")
        })
        .expect("netns");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gone_netns_del(sandbox: &Sandbox, name: &str, id: &str, conf: &str) {
    let path = plugin_dir().display().to_string();
    let call = Call {
        command: "DEL",
        container_id: id,
        netns: "/run/netns/rcni-no-such-netns",
        ifname: "eth0",
        path: &path,
        ..Default::default()
    };
    let out = sandbox.run_plugin(&plugin(name), &call, conf);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
}

#[test]
fn our_del_removes_rules_nft_wrote_in_upstreams_shapes() {
    require_root!();
    let sandbox = Sandbox::new();
    let id = "upstream-ctr";
    let instance = format!("{}-{}", sha16("mynet"), sha16(&format!("eth0:{id}")));
    nft(
        &sandbox,
        &format!(
            r#"add table inet cni_plugins_masquerade {{ comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }}
add chain inet cni_plugins_masquerade masq_checks
add chain inet cni_plugins_masquerade postrouting {{ type nat hook postrouting priority 100 ; }}
add rule inet cni_plugins_masquerade postrouting goto masq_checks
add rule inet cni_plugins_masquerade masq_checks ip saddr == 10.88.0.2 ip daddr != 10.88.0.0/16 masquerade comment "{instance}, net: mynet, if: eth0, id: {id}"
add table ip cni_hostport
add chain ip cni_hostport hostports
add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.88.0.2:80 comment "{id}"
"#
        ),
    );
    let bridge = json!({"cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "ipMasq": true,
        "ipMasqBackend": "nftables",
        "ipam": {"type": "host-local", "subnet": "10.88.0.0/16", "dataDir": sandbox.state_dir()}});
    gone_netns_del(&sandbox, "bridge", id, &bridge.to_string());
    let portmap = json!({"cniVersion": "1.0.0", "name": "mynet", "type": "portmap",
        "backend": "nftables", "dataDir": sandbox.state_dir().join("pm")});
    gone_netns_del(&sandbox, "portmap", id, &portmap.to_string());
    let left = nft_ruleset(&sandbox);
    assert!(!left.contains(id), "{left}");
}

#[test]
fn comments_are_cut_or_refused_as_upstream_does() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = common::Runner::new(&sandbox);
    // A long container ID: the masquerade comment is cut to 128 bytes.
    let id = format!("c{}", "x".repeat(150));
    let bridge = json!({"cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "ipMasq": true,
        "ipMasqBackend": "nftables", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.89.0.0/24", "dataDir": sandbox.state_dir()}});
    let result = run.add(&plugin("bridge"), &id, "eth0", &bridge.to_string());
    let rules = nft_ruleset(&sandbox);
    let comment = rules
        .lines()
        .find_map(|l| l.split("masquerade comment \"").nth(1))
        .expect("a masquerade comment");
    assert_eq!(comment.trim_end_matches('"').len(), 128, "{rules}");
    // portmap's comment is the container ID itself: one nft refuses fails the ADD,
    // and nothing of it is left.
    let mut portmap = json!({"cniVersion": "1.0.0", "name": "mynet", "type": "portmap",
        "backend": "nftables", "dataDir": sandbox.state_dir().join("pm"),
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}});
    portmap["prevResult"] = result;
    let (code, msg) = run.fails(
        &plugin("portmap"),
        "ADD",
        &id,
        "eth0",
        "",
        &portmap.to_string(),
    );
    assert_eq!(code, 999, "{msg}");
    assert!(msg.contains("comment"), "{msg}");
    assert!(
        !nft_ruleset(&sandbox).contains("cni_hostport"),
        "nothing of the failed ADD"
    );
    run.ok(&plugin("bridge"), "DEL", &id, "eth0", &bridge.to_string());
    assert!(!nft_ruleset(&sandbox).contains("masquerade comment"));
}
