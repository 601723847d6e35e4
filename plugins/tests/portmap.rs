//! portmap against the kernel, in sandboxes, with both backends: real traffic to a
//! server in the container through a host IP (from another namespace and from the
//! host itself), through 127.0.0.1 and from the container itself (hairpin), TCP and
//! UDP, IPv4 and IPv6; the rules read back with `iptables -S` and `nft list`; DEL by
//! container ID, GC, CHECK; and interop with Debian's Go portmap.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use cni_net::NetNs;
use cni_testkit::{Sandbox, require_root};
use common::{Runner, go_plugin, iptables_nat, nft_ruleset, plugin};
use rcni::meta::portmap::dnat_chain;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(2);

fn portmap() -> PathBuf {
    plugin("portmap")
}

/// A server in a namespace that answers every TCP connection or UDP datagram with
/// `token`, until dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// TCP on `[::]:port` (IPv4 too, as v4-mapped addresses).
    fn tcp(netns: &NetNs, port: u16, token: &'static str) -> Server {
        let listener = netns
            .run(|| TcpListener::bind(("::", port)))
            .expect("enter netns")
            .expect("bind TCP server");
        listener.set_nonblocking(true).expect("nonblocking");
        Server::spawn(move || match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.write_all(token.as_bytes());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        })
    }

    /// UDP on `[::]:port`.
    fn udp(netns: &NetNs, port: u16, token: &'static str) -> Server {
        let socket = netns
            .run(|| UdpSocket::bind(("::", port)))
            .expect("enter netns")
            .expect("bind UDP server");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        Server::spawn(move || {
            let mut buffer = [0u8; 64];
            if let Ok((_, peer)) = socket.recv_from(&mut buffer) {
                let _ = socket.send_to(token.as_bytes(), peer);
            }
        })
    }

    fn spawn(mut serve_one: impl FnMut() + Send + 'static) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                serve_one();
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a TCP connection from `netns` to `to` reads, or why it failed.
fn tcp_get(netns: &NetNs, to: &str) -> Result<String, String> {
    let to: SocketAddr = to.parse().expect("socket address");
    let mut stream = netns
        .run(|| TcpStream::connect_timeout(&to, WAIT))
        .expect("enter netns")
        .map_err(|e| format!("connect {to}: {e}"))?;
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read from {to}: {e}"))?;
    Ok(answer)
}

/// What a UDP datagram from `socket` to `to` gets back, or why not.
fn udp_ask(socket: &UdpSocket, to: &str) -> Result<String, String> {
    socket
        .send_to(b"ping", to)
        .map_err(|e| format!("send to {to}: {e}"))?;
    let mut buffer = [0u8; 64];
    let (n, _) = socket
        .recv_from(&mut buffer)
        .map_err(|e| format!("no answer from {to}: {e}"))?;
    Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
}

fn udp_socket(netns: &NetNs, bind: &str) -> UdpSocket {
    let socket = netns
        .run(|| UdpSocket::bind(bind))
        .expect("enter netns")
        .expect("bind UDP client");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket
}

/// The sandbox's host as a node with an external address: a veth to a client
/// namespace (another sandbox's host netns), 192.0.2.1 and 2001:db8:5::1 on the
/// host side, `.2` on the client side. `lo` is brought up for 127.0.0.1 traffic.
fn external_client(sandbox: &Sandbox) -> Sandbox {
    let client = Sandbox::new();
    let host = sandbox.host_name();
    sandbox.ip(host, &["link", "set", "lo", "up"]);
    sandbox.ip(
        host,
        &[
            "link",
            "add",
            "pm-ext",
            "type",
            "veth",
            "peer",
            "name",
            "ext0",
            "netns",
            client.host_name(),
        ],
    );
    for (ns, dev, last) in [(host, "pm-ext", "1"), (client.host_name(), "ext0", "2")] {
        sandbox.ip(
            ns,
            &["addr", "add", &format!("192.0.2.{last}/24"), "dev", dev],
        );
        sandbox.ip(
            ns,
            &[
                "addr",
                "add",
                &format!("2001:db8:5::{last}/64"),
                "dev",
                dev,
                "nodad",
            ],
        );
        sandbox.ip(ns, &["link", "set", dev, "up"]);
    }
    client
}

/// A network list of a dual-stack bridge and portmap, in a directory for cnitool.
struct Network {
    dir: tempfile::TempDir,
    portmap_dir: PathBuf,
}

fn network(sandbox: &Sandbox, backend: &str) -> Network {
    let dir = tempfile::tempdir().expect("conf dir");
    let portmap_dir = sandbox.state_dir().join("portmap");
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "pmnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                // Hairpin traffic is DNATed while bridged (br_netfilter) and goes
                // back out of the port it came in on.
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.22.0.0/24"}], [{"subnet": "fd00:22::/64"}]],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                    "dataDir": sandbox.state_dir().join("ipam"),
                }
            },
            {
                "type": "portmap",
                "capabilities": {"portMappings": true},
                "backend": backend,
                "dataDir": portmap_dir,
            }
        ]
    });
    std::fs::write(dir.path().join("pmnet.conflist"), list.to_string()).expect("write conflist");
    Network { dir, portmap_dir }
}

const MAPPINGS: &str = r#"{"portMappings": [
    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": "192.0.2.1"},
    {"hostPort": 5300, "containerPort": 53, "protocol": "udp"}
]}"#;

/// Waits until the bridge's IPv6 gateway address has finished duplicate address
/// detection: bridge adds it with DAD, as upstream, and until then the container's
/// IPv6 replies have no router to go to.
fn settle_gateway(sandbox: &Sandbox) {
    for _ in 0..100 {
        let tentative = sandbox.ip(
            sandbox.host_name(),
            &["-6", "addr", "show", "dev", "cni0", "tentative"],
        );
        if tentative.trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cni0's IPv6 address is still tentative after 5 s");
}

/// Runs `cnitool VERB pmnet <container netns>` in the sandbox host.
fn cnitool(sandbox: &Sandbox, net: &Network, verb: &str) -> Value {
    common::cnitool(sandbox, net.dir.path(), "pmnet", verb, MAPPINGS)
}

fn sysctl_in(ns: &str, name: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat", &format!("/proc/sys/{name}")])
        .output()
        .expect("ip netns exec");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Both families' nat tables (iptables) or the whole ruleset (nft).
fn firewall(sandbox: &Sandbox, backend: &str) -> String {
    if backend == "iptables" {
        iptables_nat(sandbox, false) + &iptables_nat(sandbox, true)
    } else {
        nft_ruleset(sandbox)
    }
}

fn forwarding_end_to_end(backend: &str) {
    let sandbox = Sandbox::new();
    let client = external_client(&sandbox);
    let net = network(&sandbox, backend);
    let result = cnitool(&sandbox, &net, "add");
    let ips: Vec<&str> = result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .collect();
    assert_eq!(ips.len(), 2, "{result}");

    settle_gateway(&sandbox);
    let _tcp = Server::tcp(&sandbox.container, 80, "tcp-ok");
    let _udp = Server::udp(&sandbox.container, 53, "udp-ok");
    let external = &client.host;
    let host = &sandbox.host;
    let container = &sandbox.container;
    let mut failures = Vec::new();
    for (from, name, to) in [
        (external, "external v4", "192.0.2.1:8080"),
        (external, "external v6", "[2001:db8:5::1]:8080"),
        (host, "host to its own address", "192.0.2.1:8080"),
        (host, "host v6", "[2001:db8:5::1]:8080"),
        (host, "localhost", "127.0.0.1:8080"),
        (container, "hairpin v4", "192.0.2.1:8080"),
        (container, "hairpin v6", "[2001:db8:5::1]:8080"),
        (container, "hairpin via gateway", "10.22.0.1:8080"),
        (external, "its host IP", "192.0.2.1:8081"),
        (host, "its host IP from the host", "192.0.2.1:8081"),
    ] {
        let answer = tcp_get(from, to);
        if answer.as_deref() != Ok("tcp-ok") {
            failures.push(format!("{name} ({to}): {answer:?}"));
        }
    }
    // A mapping with a host IP answers on that address only.
    for (from, name, to) in [
        (host, "other address", "127.0.0.1:8081"),
        (external, "other family", "[2001:db8:5::1]:8081"),
    ] {
        if let Ok(answer) = tcp_get(from, to) {
            failures.push(format!("{name} ({to}) answered {answer:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{backend}: {failures:#?}\n{}",
        firewall(&sandbox, backend)
    );
    for to in ["192.0.2.1:5300", "[2001:db8:5::1]:5300"] {
        let socket = udp_socket(
            external,
            if to.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            },
        );
        assert_eq!(
            udp_ask(&socket, to).as_deref(),
            Ok("udp-ok"),
            "{backend}: UDP {to}"
        );
    }
    assert_eq!(
        sysctl_in(sandbox.host_name(), "net/ipv4/conf/cni0/route_localnet"),
        "1"
    );
    cnitool(&sandbox, &net, "check");
    let rules = firewall(&sandbox, backend);
    if backend == "iptables" {
        assert!(rules.contains("-N CNI-DN-"), "{rules}");
        assert_eq!(rules.matches("--to-destination").count(), 5, "{rules}");
    } else {
        assert_eq!(rules.matches(" dnat to ").count(), 5, "{rules}");
        assert!(rules.contains("table ip6 cni_hostport"), "{rules}");
        assert_eq!(
            std::fs::read_dir(net.portmap_dir.join("pmnet"))
                .expect("state")
                .count(),
            1
        );
    }

    cnitool(&sandbox, &net, "del");
    cnitool(&sandbox, &net, "del");
    let left = firewall(&sandbox, backend);
    if backend == "iptables" {
        assert!(
            !left.contains("CNI-DN-") && !left.contains("dnat name"),
            "{left}"
        );
        // The shared chains stay, as upstream leaves them.
        assert!(left.contains("-N CNI-HOSTPORT-DNAT"), "{left}");
        assert!(left.contains("-N CNI-HOSTPORT-MASQ"), "{left}");
    } else {
        assert!(
            !left.contains("dnat to") && !left.contains("masquerade"),
            "{left}"
        );
        assert_eq!(
            std::fs::read_dir(net.portmap_dir.join("pmnet"))
                .expect("state")
                .count(),
            0
        );
    }
    assert!(
        tcp_get(external, "192.0.2.1:8080").is_err(),
        "the host port still answers after DEL"
    );
}

#[test]
fn iptables_forwards_tcp_and_udp_from_outside_the_host_localhost_and_the_container() {
    require_root!();
    forwarding_end_to_end("iptables");
}

#[test]
fn nftables_forwards_tcp_and_udp_from_outside_the_host_localhost_and_the_container() {
    require_root!();
    forwarding_end_to_end("nftables");
}

/// Upstream's "second container, same host port" case: a UDP client that keeps
/// sending from one port reaches the new container only if ADD clears the stale
/// conntrack entry.
#[test]
fn udp_conntrack_entries_are_cleared_on_add() {
    require_root!();
    let sandbox = Sandbox::new();
    let client = external_client(&sandbox);
    let net = network(&sandbox, "iptables");
    let socket = udp_socket(&client.host, "192.0.2.2:40000");

    let first = cnitool(&sandbox, &net, "add");
    let server = Server::udp(&sandbox.container, 53, "first");
    assert_eq!(udp_ask(&socket, "192.0.2.1:5300").as_deref(), Ok("first"));
    drop(server);
    cnitool(&sandbox, &net, "del");

    let second = cnitool(&sandbox, &net, "add");
    assert_ne!(
        first["ips"][0]["address"], second["ips"][0]["address"],
        "the second attachment must have a new address for this test to mean anything"
    );
    let _server = Server::udp(&sandbox.container, 53, "second");
    assert_eq!(udp_ask(&socket, "192.0.2.1:5300").as_deref(), Ok("second"));
    cnitool(&sandbox, &net, "del");
}

/// A prevResult for a container with one address per family on eth0.
fn prev_result(v4: &str, v6: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "veth0"}, {"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [
            {"address": v4, "interface": 1},
            {"address": v6, "interface": 1},
            {"address": "172.16.0.9/24", "interface": 0}
        ]
    })
}

fn conf(network: &str, backend: &str, data_dir: &Path, extra: Value) -> Value {
    let mut conf = json!({
        "cniVersion": "1.0.0",
        "name": network,
        "type": "portmap",
        "backend": backend,
        "dataDir": data_dir,
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8443, "containerPort": 443, "protocol": "tcp", "hostIP": "192.0.2.1"},
            {"hostPort": 5300, "containerPort": 53, "protocol": "udp"}
        ]}
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        if v.is_null() {
            conf.as_object_mut().expect("object").remove(k);
        } else {
            conf[k] = v.clone();
        }
    }
    conf
}

/// The rules of one container, as lines of the backend's listing.
fn rules_of(sandbox: &Sandbox, backend: &str, network: &str, id: &str) -> Vec<String> {
    let chain = dnat_chain(network, id);
    let comment = format!("comment \"{id}\"");
    firewall(sandbox, backend)
        .lines()
        .filter(|l| {
            if backend == "iptables" {
                l.contains(&chain)
            } else {
                l.trim_end().ends_with(&comment)
            }
        })
        .map(str::to_string)
        .collect()
}

fn rules_by_container_id(backend: &str) {
    let sandbox = Sandbox::new();
    let runner = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("portmap");
    let add = |network: &str, id: &str, last: u8| {
        let mut stdin = conf(network, backend, &data, json!({}));
        stdin["prevResult"] =
            prev_result(&format!("10.99.0.{last}/24"), &format!("fd99::{last}/64"));
        let result = runner.add(&portmap(), id, "eth0", &stdin.to_string());
        assert_eq!(result, stdin["prevResult"], "ADD passes prevResult through");
    };
    add("pmnet", "ctr-1", 5);
    add("pmnet", "ctr-2", 6);
    add("othernet", "ctr-3", 7);
    let one = rules_of(&sandbox, backend, "pmnet", "ctr-1");
    // iptables, per family: the chain, 3 rules per v4 mapping (mark hairpin, mark
    // localhost, DNAT) or 2 per v6 one (the v4 host IP's mapping skipped), and 2
    // entry rules (tcp, udp): 12 + 7. nft: a DNAT per mapping and family (3 + 2) and
    // 2 + 1 masquerades.
    let expected = if backend == "iptables" { 19 } else { 8 };
    assert_eq!(one.len(), expected, "{one:#?}");
    // ctr-2 found the shared chains in place (iptables: the one-restore path); its
    // rules are the same, and the shared chains were not written twice.
    let two = rules_of(&sandbox, backend, "pmnet", "ctr-2");
    assert_eq!(two.len(), expected, "{two:#?}");
    if backend == "iptables" {
        let all = firewall(&sandbox, backend);
        assert_eq!(all.matches("-A CNI-HOSTPORT-SETMARK").count(), 2, "{all}");
        assert_eq!(all.matches("-A CNI-HOSTPORT-MASQ").count(), 2, "{all}");
        assert_eq!(all.matches("-j CNI-HOSTPORT-DNAT").count(), 4, "{all}");
    } else {
        // ctr-2 and ctr-3 found the skeleton in place and only added their rules: in
        // each family's table, one entry rule per base chain, one jump to each level.
        let all = firewall(&sandbox, backend);
        let count = |text: &str| all.matches(text).count();
        assert_eq!(
            count("fib daddr type local jump hostports_all"),
            2 * 2,
            "{all}"
        );
        assert_eq!(count("jump hostip_hostports"), 2, "{all}");
        assert_eq!(count("hook postrouting"), 2, "{all}");
    }
    add("pmnet", "ctr-1", 5);
    assert_eq!(
        rules_of(&sandbox, backend, "pmnet", "ctr-1").len(),
        expected,
        "a repeated ADD must not duplicate rules"
    );

    // CHECK passes, and notices a mapping that is not there.
    let mut check = conf("pmnet", backend, &data, json!({}));
    check["prevResult"] = prev_result("10.99.0.5/24", "fd99::5/64");
    runner.ok(&portmap(), "CHECK", "ctr-1", "eth0", &check.to_string());
    check["runtimeConfig"]["portMappings"][0]["hostPort"] = json!(9999);
    let (code, msg) = runner.fails(&portmap(), "CHECK", "ctr-1", "eth0", "", &check.to_string());
    assert_eq!(code, 999);
    assert!(
        msg.contains("not found") || msg.contains("missing"),
        "{msg}"
    );

    // DEL without mappings or prevResult removes exactly this container's rules: the
    // attachment's addresses come from its interface (a runtime deletes portmap
    // before the interface it was chained to).
    container_eth0(&sandbox, "10.99.0.5/24", "fd99::5/64");
    let bare = conf("pmnet", backend, &data, json!({"runtimeConfig": null})).to_string();
    runner.ok(&portmap(), "DEL", "ctr-1", "eth0", &bare);
    assert_eq!(
        rules_of(&sandbox, backend, "pmnet", "ctr-1"),
        Vec::<String>::new()
    );
    assert!(!rules_of(&sandbox, backend, "pmnet", "ctr-2").is_empty());
    runner.ok(&portmap(), "DEL", "ctr-1", "eth0", &bare);

    // GC keeps valid attachments and removes the others of this network only.
    let gc = |valid: Value| {
        let stdin = conf(
            "pmnet",
            backend,
            &data,
            json!({"cniVersion": "1.1.0", "runtimeConfig": null, "cni.dev/valid-attachments": valid}),
        );
        runner.ok(&portmap(), "GC", "", "", &stdin.to_string());
    };
    gc(json!([{"containerID": "ctr-2", "ifname": "eth0"}]));
    assert!(!rules_of(&sandbox, backend, "pmnet", "ctr-2").is_empty());
    gc(json!([]));
    assert_eq!(
        rules_of(&sandbox, backend, "pmnet", "ctr-2"),
        Vec::<String>::new()
    );
    assert_eq!(
        rules_of(&sandbox, backend, "othernet", "ctr-3").len(),
        expected
    );

    container_eth0(&sandbox, "10.99.0.7/24", "fd99::7/64");
    let other = conf("othernet", backend, &data, json!({"runtimeConfig": null})).to_string();
    runner.ok(&portmap(), "DEL", "ctr-3", "eth0", &other);
    let left = firewall(&sandbox, backend);
    assert!(
        !left.contains("CNI-DN-")
            && !left.contains("dnat to")
            && !left.contains("masquerade comment"),
        "{left}"
    );
    let files: Vec<_> = walk(&data);
    assert!(files.is_empty(), "state left: {files:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

#[test]
fn iptables_del_gc_and_check_work_by_container_id() {
    require_root!();
    rules_by_container_id("iptables");
}

#[test]
fn nftables_del_gc_and_check_work_by_container_id() {
    require_root!();
    rules_by_container_id("nftables");
}

#[test]
fn config_errors_and_calls_without_work() {
    require_root!();
    let sandbox = Sandbox::new();
    let runner = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("portmap");
    let prev = prev_result("10.99.0.5/24", "fd99::5/64");
    let cases = [
        (
            json!({"markMasqBit": 5, "externalSetMarkChain": "KUBE-MARK-MASQ"}),
            "failed to parse config: Cannot specify externalSetMarkChain and markMasqBit",
        ),
        (
            json!({"markMasqBit": 32}),
            "failed to parse config: MasqMarkBit must be between 0 and 31",
        ),
        (
            json!({"backend": "iptables", "conditionsV4": ["aaa", "bbbb"], "conditionsV6": ["ccc"]}),
            "failed to parse config: iptables backend was requested but configuration contains nftables-specific options [conditionsV4 conditionsV6]",
        ),
        (
            json!({"backend": "nftables", "externalSetMarkChain": "X", "conditionsV4": ["-a", "b"], "conditionsV6": ["!", "-d", "::1"]}),
            "failed to parse config: nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain conditionsV4 conditionsV6]",
        ),
        (
            json!({"backend": "ebtables"}),
            "failed to parse config: unrecognized backend \"ebtables\"",
        ),
        (
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]}}),
            "failed to parse config: Invalid host port number: 0",
        ),
        (
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": -1, "protocol": "tcp"}]}}),
            "failed to parse config: Invalid container port number: -1",
        ),
        (
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}]}}),
            "failed to parse config: Invalid host port number: 70000",
        ),
        (
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}}),
            "failed to parse config: Invalid protocol \"icmp\" for host port 80: want tcp, udp or sctp",
        ),
        (
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "tcp", "hostIP": "nowhere"}]}}),
            "failed to parse config: Invalid host IP \"nowhere\"",
        ),
    ];
    for (extra, expected) in cases {
        let mut stdin = conf("pmnet", "iptables", &data, extra);
        stdin["prevResult"] = prev.clone();
        let (code, msg) = runner.fails(&portmap(), "ADD", "ctr", "eth0", "", &stdin.to_string());
        assert_eq!((code, msg.as_str()), (999, expected));
    }

    let plain = conf("pmnet", "iptables", &data, json!({}));
    let (_, msg) = runner.fails(&portmap(), "ADD", "ctr", "eth0", "", &plain.to_string());
    assert_eq!(msg, "must be called as chained plugin");
    let (_, msg) = runner.fails(&portmap(), "CHECK", "ctr", "eth0", "", &plain.to_string());
    assert_eq!(msg, "Required prevResult missing");

    // No mappings: prevResult comes back and no firewall object is made.
    for backend in ["iptables", "nftables"] {
        let mut stdin = conf("pmnet", backend, &data, json!({"runtimeConfig": {}}));
        stdin["prevResult"] = prev.clone();
        let result = runner.add(&portmap(), "ctr", "eth0", &stdin.to_string());
        assert_eq!(result, prev);
    }
    assert!(!iptables_nat(&sandbox, false).contains("CNI-HOSTPORT"));
    assert!(!nft_ruleset(&sandbox).contains("cni_hostport"));
    // Nor a result without an address on CNI_IFNAME.
    let mut stdin = conf("pmnet", "iptables", &data, json!({}));
    stdin["prevResult"] = prev.clone();
    let result = runner.add(&portmap(), "ctr", "net1", &stdin.to_string());
    assert_eq!(result, prev);
    assert!(!iptables_nat(&sandbox, false).contains("CNI-HOSTPORT"));
}

/// The container's `eth0`, with these addresses (as a main plugin would have made
/// it), replacing an earlier one.
fn container_eth0(sandbox: &Sandbox, v4: &str, v6: &str) {
    let ctr = sandbox.container_name();
    let _ = std::process::Command::new("ip")
        .args(["-n", ctr, "link", "del", "eth0"])
        .output();
    sandbox.ip(
        ctr,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ],
    );
    sandbox.ip(ctr, &["addr", "add", v4, "dev", "eth0"]);
    sandbox.ip(ctr, &["addr", "add", v6, "dev", "eth0", "nodad"]);
}

/// Debian's Go portmap (v1.1.1, iptables only) and ours remove each other's rules,
/// and ours accepts Go's as CHECK. (Go v1.1.1's CHECK fails even on its own rules:
/// it looks for the IPv4 rules in ip6tables too.)
#[test]
fn go_portmap_interop() {
    require_root!();
    let Some(go) = go_plugin("portmap") else {
        return;
    };
    let sandbox = Sandbox::new();
    let runner = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("portmap");
    // Go v1.1.1 predates `backend`.
    let stdin = |last: u8| {
        let mut stdin = conf("pmnet", "iptables", &data, json!({"backend": null}));
        stdin["prevResult"] =
            prev_result(&format!("10.99.0.{last}/24"), &format!("fd99::{last}/64"));
        stdin.to_string()
    };

    runner.add(&go, "go-ctr", "eth0", &stdin(5));
    let go_rules = rules_of(&sandbox, "iptables", "pmnet", "go-ctr");
    assert_eq!(go_rules.len(), 19, "{go_rules:#?}");
    runner.ok(&portmap(), "CHECK", "go-ctr", "eth0", &stdin(5));
    container_eth0(&sandbox, "10.99.0.5/24", "fd99::5/64");
    let bare = conf("pmnet", "iptables", &data, json!({"runtimeConfig": null})).to_string();
    runner.ok(&portmap(), "DEL", "go-ctr", "eth0", &bare);
    assert_eq!(
        rules_of(&sandbox, "iptables", "pmnet", "go-ctr"),
        Vec::<String>::new()
    );

    runner.add(&portmap(), "our-ctr", "eth0", &stdin(6));
    assert_eq!(rules_of(&sandbox, "iptables", "pmnet", "our-ctr").len(), 19);
    runner.ok(&go, "DEL", "our-ctr", "eth0", &stdin(6));
    assert_eq!(
        rules_of(&sandbox, "iptables", "pmnet", "our-ctr"),
        Vec::<String>::new()
    );
    let left = iptables_nat(&sandbox, false) + &iptables_nat(&sandbox, true);
    assert!(!left.contains("CNI-DN-"), "{left}");
}

/// `externalSetMarkChain` rules jump to the runtime's chain; when that chain exists
/// in IPv4 only, the IPv6 half fails and the ADD removes its IPv4 half too.
#[test]
fn external_mark_chain_and_a_failed_add_that_leaves_nothing() {
    require_root!();
    let sandbox = Sandbox::new();
    let runner = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("portmap");
    let iptables = |v6: bool, args: &[&str]| {
        let bin = if v6 { "ip6tables" } else { "iptables" };
        let out = sandbox.run_in_host(Path::new(bin), args, &[]);
        assert!(out.status.success(), "{bin} {args:?}");
    };
    iptables(false, &["-t", "nat", "-N", "KUBE-MARK-MASQ"]);
    let mut stdin = conf(
        "pmnet",
        "iptables",
        &data,
        json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}),
    );
    stdin["prevResult"] = prev_result("10.99.0.5/24", "fd99::5/64");
    let (code, msg) = runner.fails(&portmap(), "ADD", "ctr-1", "eth0", "", &stdin.to_string());
    assert_eq!(code, 999);
    assert!(msg.contains("ip6tables-restore"), "{msg}");
    assert_eq!(
        rules_of(&sandbox, "iptables", "pmnet", "ctr-1"),
        Vec::<String>::new()
    );

    iptables(true, &["-t", "nat", "-N", "KUBE-MARK-MASQ"]);
    runner.add(&portmap(), "ctr-1", "eth0", &stdin.to_string());
    let rules = rules_of(&sandbox, "iptables", "pmnet", "ctr-1");
    assert_eq!(
        rules
            .iter()
            .filter(|r| r.ends_with("-j KUBE-MARK-MASQ"))
            .count(),
        8,
        "{rules:#?}"
    );
    let nat = iptables_nat(&sandbox, false);
    assert!(!nat.contains("CNI-HOSTPORT-SETMARK"), "{nat}");
    runner.ok(&portmap(), "CHECK", "ctr-1", "eth0", &stdin.to_string());
    runner.ok(&portmap(), "DEL", "ctr-1", "eth0", &stdin.to_string());
    assert_eq!(
        rules_of(&sandbox, "iptables", "pmnet", "ctr-1"),
        Vec::<String>::new()
    );
}
