//! podman's CNI networks on rcni alone: the default network podman installs
//! (`87-podman-bridge.conflist`: bridge, portmap, firewall, tuning) and the shape
//! `podman network create` writes, run through our libcni (`cnitool`) with only
//! our plugins on `CNI_PATH`: the container gets its address, a published port
//! answers, the firewall lets it through, and DEL leaves nothing of it behind.
//!
//! The lists are podman's exactly, plus `dataDir` keys that keep the state in the
//! test's sandbox instead of `/var/lib/cni`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use cni_testkit::{Sandbox, require_root};
use common::{addresses, iptables_nat, iptables_table, links, reservations};
use serde_json::{Value, json};

/// podman's default network (`/etc/cni/net.d/87-podman-bridge.conflist`).
fn podman_default() -> Value {
    json!({
        "cniVersion": "0.4.0",
        "name": "podman",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni-podman0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning"}
        ]
    })
}

/// What `podman network create --label team=net podnet` writes (CNI backend).
fn podman_network_create() -> Value {
    json!({
        "cniVersion": "0.4.0",
        "name": "podnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni-podman1",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall", "backend": ""},
            {"type": "tuning"}
        ],
        "args": {"podman_labels": {"team": "net"}}
    })
}

/// The list with its state kept in the sandbox.
fn in_sandbox(mut list: Value, sandbox: &Sandbox) -> Value {
    let state = sandbox.state_dir();
    list["plugins"][0]["ipam"]["dataDir"] = json!(state.join("ipam"));
    list["plugins"][1]["dataDir"] = json!(state.join("portmap"));
    list["plugins"][2]["dataDir"] = json!(state.join("firewall"));
    list["plugins"][3]["dataDir"] = json!(state.join("tuning"));
    list
}

const MAPPINGS: &str =
    r#"{"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}"#;

fn cnitool(sandbox: &Sandbox, dir: &std::path::Path, name: &str, verb: &str) -> Value {
    common::cnitool(sandbox, dir, name, verb, MAPPINGS)
}

/// Connects from the sandbox host to `to` and reads the answer.
fn fetch(sandbox: &Sandbox, to: &str) -> Result<String, String> {
    sandbox
        .host
        .run(|| -> std::io::Result<String> {
            let mut stream =
                TcpStream::connect_timeout(&to.parse().expect("address"), Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

fn run_network(list: Value, bridge: &str, gateway: &str, subnet_prefix: &str) {
    let sandbox = Sandbox::new();
    let name = list["name"].as_str().expect("name").to_string();
    let dir = tempfile::tempdir().expect("conf dir");
    std::fs::write(
        dir.path().join(format!("{name}.conflist")),
        in_sandbox(list, &sandbox).to_string(),
    )
    .expect("write conflist");

    let result = cnitool(&sandbox, dir.path(), &name, "add");
    assert_eq!(result["cniVersion"], "0.4.0", "{result}");
    let address = result["ips"][0]["address"].as_str().expect("address");
    assert!(address.starts_with(subnet_prefix), "{result}");
    let ip = common::first_ip(&result);
    assert_eq!(
        addresses(&sandbox, sandbox.container_name(), "eth0"),
        vec![address.to_string()]
    );
    let filter = iptables_table(&sandbox, false, "filter");
    for rule in [
        "-A FORWARD -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD".to_string(),
        format!("-A CNI-FORWARD -s {ip}/32 -j ACCEPT"),
        format!("-A CNI-FORWARD -d {ip}/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
    ] {
        assert!(filter.contains(&rule), "{rule} missing in\n{filter}");
    }
    assert!(iptables_nat(&sandbox, false).contains("CNI-HOSTPORT-DNAT"));

    // The published port answers, through the firewall.
    let listener = sandbox
        .container
        .run(|| TcpListener::bind(("0.0.0.0", 80)))
        .expect("enter")
        .expect("listen");
    let server = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(b"podman-ok");
        }
    });
    assert_eq!(
        fetch(&sandbox, &format!("{gateway}:8080")).as_deref(),
        Ok("podman-ok")
    );
    server.join().expect("server");

    cnitool(&sandbox, dir.path(), &name, "check");
    cnitool(&sandbox, dir.path(), &name, "del");
    cnitool(&sandbox, dir.path(), &name, "del");
    let filter = iptables_table(&sandbox, false, "filter");
    assert!(!filter.contains(&ip), "{filter}");
    let nat = iptables_nat(&sandbox, false);
    assert!(!nat.contains("CNI-DN-") && !nat.contains(&ip), "{nat}");
    assert_eq!(links(&sandbox, sandbox.container_name()), vec!["lo"]);
    assert_eq!(
        reservations(&sandbox.state_dir().join("ipam").join(&name)),
        vec![]
    );
    assert!(
        sandbox
            .ip(sandbox.host_name(), &["link", "show", "master", bridge])
            .trim()
            .is_empty(),
        "no port left on {bridge}"
    );
}

#[test]
fn podmans_default_network_runs_on_rcni_alone() {
    require_root!();
    run_network(podman_default(), "cni-podman0", "10.88.0.1", "10.88.");
}

#[test]
fn a_network_from_podman_network_create_runs_on_rcni_alone() {
    require_root!();
    run_network(
        podman_network_create(),
        "cni-podman1",
        "10.89.0.1",
        "10.89.0.",
    );
}
