//! Validation of container IDs, network names and interface names, with upstream's
//! codes and texts (`pkg/utils`).

use crate::error::{Error, code};

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`
fn is_cni_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn container_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::new(code::UNKNOWN_CONTAINER, "missing containerID"));
    }
    if !is_cni_name(id) {
        return Err(Error::with_details(
            code::INVALID_ENVIRONMENT_VARIABLES,
            "invalid characters in containerID",
            id,
        ));
    }
    Ok(())
}

pub fn network_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::new(
            code::INVALID_NETWORK_CONFIG,
            "missing network name:",
        ));
    }
    if !is_cni_name(name) {
        return Err(Error::with_details(
            code::INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
            name,
        ));
    }
    Ok(())
}

/// Linux limits names to 15 bytes (IFNAMSIZ - 1).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

pub fn interface_name(name: &str) -> Result<(), Error> {
    let invalid = |msg: &str| Error::new(code::INVALID_ENVIRONMENT_VARIABLES, msg);
    if name.is_empty() {
        return Err(invalid("interface name is empty"));
    }
    if name.len() > MAX_INTERFACE_NAME_LEN {
        return Err(Error::with_details(
            code::INVALID_ENVIRONMENT_VARIABLES,
            "interface name is too long",
            format!(
                "interface name should be less than {} characters",
                MAX_INTERFACE_NAME_LEN + 1
            ),
        ));
    }
    if name == "." || name == ".." {
        return Err(invalid("interface name is . or .."));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(invalid(
            "interface name contains / or : or whitespace characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        assert!(container_id("abc-1.2_x").is_ok());
        assert_eq!(container_id("").map_err(|e| e.code), Err(3));
        let e = container_id("-abc").expect_err("leading dash");
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (4, "invalid characters in containerID", "-abc")
        );
        assert!(container_id("a/b").is_err());
        assert!(container_id(&"a".repeat(500)).is_ok(), "no length limit");
    }

    #[test]
    fn network_names() {
        assert!(network_name("mynet").is_ok());
        assert_eq!(
            network_name("").map_err(|e| (e.code, e.msg)),
            Err((7, "missing network name:".into()))
        );
        assert_eq!(network_name("my net").map_err(|e| e.code), Err(7));
    }

    #[test]
    fn interface_names() {
        assert!(interface_name("eth0").is_ok());
        assert!(interface_name("a23456789012345").is_ok());
        for (name, msg) in [
            ("", "interface name is empty"),
            ("a234567890123456", "interface name is too long"),
            (".", "interface name is . or .."),
            ("..", "interface name is . or .."),
            (
                "a/b",
                "interface name contains / or : or whitespace characters",
            ),
            (
                "a:b",
                "interface name contains / or : or whitespace characters",
            ),
            (
                "a b",
                "interface name contains / or : or whitespace characters",
            ),
            (
                "a\u{a0}b",
                "interface name contains / or : or whitespace characters",
            ),
        ] {
            let e = interface_name(name).expect_err(name);
            assert_eq!((e.code, e.msg.as_str()), (4, msg), "{name:?}");
        }
        // 15 bytes, not 15 characters.
        assert!(interface_name("ééééééééé").is_err());
    }
}
