//! firewall's firewalld backend: the container's addresses become sources of a
//! firewalld zone (`trusted` by default), as upstream's `zone.addSource` over
//! D-Bus. Whether firewalld runs is asked on the system bus, as upstream asks
//! (`NameHasOwner`); the zone changes go through `firewall-cmd`, firewalld's own
//! D-Bus client.

use std::net::IpAddr;
use std::path::Path;

use cni_net::dbus::{SYSTEM_BUS, name_has_owner};
use cni_types::Error;

/// firewalld's name on the bus.
const FIREWALLD: &str = "org.fedoraproject.FirewallD1";

/// Whether firewalld owns its name on the system bus (the default backend then is
/// firewalld, as upstream's). No bus, or no answer, is no.
pub(super) fn running() -> bool {
    Path::new(SYSTEM_BUS).exists()
        && name_has_owner(Path::new(SYSTEM_BUS), FIREWALLD).unwrap_or(false)
}

/// A clear error when firewalld cannot be asked at all, or does not run.
fn require_bus() -> Result<(), Error> {
    if !Path::new(SYSTEM_BUS).exists() {
        return Err(Error::internal(format!(
            "firewalld backend: no system D-Bus at {SYSTEM_BUS}, so firewalld cannot be reached; use backend \"iptables\" or \"nftables\""
        )));
    }
    match name_has_owner(Path::new(SYSTEM_BUS), FIREWALLD) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::internal(format!(
            "firewalld backend: firewalld is not running ({FIREWALLD} has no owner on the system bus)"
        ))),
        Err(e) => Err(Error::internal(format!("firewalld backend: {e}"))),
    }
}

fn source(ip: IpAddr) -> String {
    format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })
}

fn firewall_cmd(zone: &str, verb: &str, ip: IpAddr) -> Result<String, Error> {
    let out = std::process::Command::new("firewall-cmd")
        .arg(format!("--zone={zone}"))
        .arg(format!("--{verb}-source={}", source(ip)))
        .output()
        .map_err(|e| Error::internal(format!("firewalld backend: running firewall-cmd: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // ZONE_ALREADY_SET (the source is in the zone already) is success, as upstream.
    if out.status.success() || err.contains("ZONE_ALREADY_SET") {
        Ok(text)
    } else {
        Err(Error::internal(format!(
            "failed to {verb} source {} in firewalld zone {zone}: {err}{text}",
            source(ip)
        )))
    }
}

pub(super) fn add(zone: &str, ips: &[IpAddr]) -> Result<(), Error> {
    require_bus()?;
    for ip in ips {
        firewall_cmd(zone, "add", *ip)?;
    }
    Ok(())
}

/// Errors are ignored, as upstream: the source may be gone already.
pub(super) fn del(zone: &str, ips: &[IpAddr]) {
    if require_bus().is_ok() {
        for ip in ips {
            let _ = firewall_cmd(zone, "remove", *ip);
        }
    }
}

pub(super) fn check(zone: &str, ips: &[IpAddr]) -> Result<(), Error> {
    require_bus()?;
    for ip in ips {
        if firewall_cmd(zone, "query", *ip)? != "yes" {
            return Err(Error::internal(format!(
                "source {} not found in firewalld zone {zone}",
                source(*ip)
            )));
        }
    }
    Ok(())
}
