//! The one D-Bus question plugins ask: does a bus name have an owner? (firewall
//! picks its firewalld backend when `org.fedoraproject.FirewallD1` has one, as
//! upstream.) A minimal client over the bus's unix socket: `AUTH EXTERNAL`, `Hello`,
//! then `NameHasOwner`, in the little-endian wire format; no D-Bus library.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::{NetError, Result};

/// The system bus.
pub const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;

/// Whether `name` has an owner on the bus at `socket`. No socket there is an error
/// that says so.
pub fn name_has_owner(socket: &Path, name: &str) -> Result<bool> {
    let failed = |what: &str, e: std::io::Error| {
        NetError::io(format!("D-Bus at {}: {what}", socket.display()), e)
    };
    let stream = UnixStream::connect(socket).map_err(|e| failed("connect", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| failed("timeout", e))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| failed("socket", e))?);
    let mut writer = stream;

    let uid = nix::unistd::geteuid().as_raw().to_string();
    let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    writer
        .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
        .map_err(|e| failed("auth", e))?;
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| failed("auth", e))?;
    if !line.starts_with("OK ") {
        return Err(NetError::Other(format!(
            "D-Bus at {}: authentication refused: {}",
            socket.display(),
            line.trim()
        )));
    }
    writer
        .write_all(b"BEGIN\r\n")
        .map_err(|e| failed("begin", e))?;

    writer
        .write_all(&bus_call(1, "Hello", None))
        .map_err(|e| failed("hello", e))?;
    reply(&mut reader, 1).map_err(|e| failed("hello", e))?;
    writer
        .write_all(&bus_call(2, "NameHasOwner", Some(name)))
        .map_err(|e| failed("NameHasOwner", e))?;
    let body = reply(&mut reader, 2).map_err(|e| failed("NameHasOwner", e))?;
    match body.get(..4) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != 0),
        None => Err(NetError::Other(format!(
            "D-Bus at {}: NameHasOwner answered without a value",
            socket.display()
        ))),
    }
}

fn pad(buf: &mut Vec<u8>, to: usize) {
    while !buf.len().is_multiple_of(to) {
        buf.push(0);
    }
}

/// A string (or object path) value: length, bytes, NUL.
fn put_string(buf: &mut Vec<u8>, s: &str) {
    pad(buf, 4);
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

/// A header field: code, then a variant of type `sig` holding `value`.
fn put_field(buf: &mut Vec<u8>, code: u8, sig: &str, value: &str) {
    pad(buf, 8);
    buf.push(code);
    buf.push(sig.len() as u8);
    buf.extend_from_slice(sig.as_bytes());
    buf.push(0);
    if sig == "g" {
        buf.push(value.len() as u8);
        buf.extend_from_slice(value.as_bytes());
        buf.push(0);
    } else {
        put_string(buf, value);
    }
}

/// A method call on the bus itself (`org.freedesktop.DBus`), with an optional
/// string argument.
fn bus_call(serial: u32, member: &str, arg: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(arg) = arg {
        put_string(&mut body, arg);
    }
    let mut fields = Vec::new();
    put_field(&mut fields, FIELD_PATH, "o", "/org/freedesktop/DBus");
    put_field(&mut fields, FIELD_INTERFACE, "s", "org.freedesktop.DBus");
    put_field(&mut fields, FIELD_MEMBER, "s", member);
    put_field(&mut fields, FIELD_DESTINATION, "s", "org.freedesktop.DBus");
    if arg.is_some() {
        put_field(&mut fields, FIELD_SIGNATURE, "g", "s");
    }
    let mut message = vec![b'l', METHOD_CALL, 0, 1];
    message.extend_from_slice(&(body.len() as u32).to_le_bytes());
    message.extend_from_slice(&serial.to_le_bytes());
    message.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    message.extend_from_slice(&fields);
    pad(&mut message, 8);
    message.extend_from_slice(&body);
    message
}

/// Reads messages until the reply to `serial` and returns its body; an error reply
/// is an error. Signals on the way (`NameAcquired`) are skipped.
fn reply(reader: &mut impl Read, serial: u32) -> std::io::Result<Vec<u8>> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    loop {
        let mut fixed = [0u8; 16];
        reader.read_exact(&mut fixed)?;
        if fixed[0] != b'l' {
            return Err(invalid("a big-endian message"));
        }
        let u32_at =
            |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let body_len = u32_at(&fixed, 4) as usize;
        let fields_len = u32_at(&fixed, 12) as usize;
        if body_len > 1 << 20 || fields_len > 1 << 16 {
            return Err(invalid("an oversized message"));
        }
        let padded = (16 + fields_len).next_multiple_of(8) - 16;
        let mut fields = vec![0u8; padded];
        reader.read_exact(&mut fields)?;
        let mut body = vec![0u8; body_len];
        reader.read_exact(&mut body)?;
        if !matches!(fixed[1], METHOD_RETURN | ERROR) {
            continue;
        }
        if reply_serial(&fields[..fields_len]) != Some(serial) {
            continue;
        }
        if fixed[1] == ERROR {
            return Err(invalid("the bus answered with an error"));
        }
        return Ok(body);
    }
}

/// The `REPLY_SERIAL` header field (a `u` variant).
fn reply_serial(fields: &[u8]) -> Option<u32> {
    let mut at = 0;
    while at + 4 <= fields.len() {
        let code = fields[at];
        let sig_len = fields[at + 1] as usize;
        let sig = fields.get(at + 2..at + 2 + sig_len)?;
        let mut value = (at + 3 + sig_len).next_multiple_of(if sig == b"g" { 1 } else { 4 });
        let len = match sig {
            b"u" => 4,
            b"s" | b"o" => {
                let b = fields.get(value..value + 4)?;
                4 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize + 1
            }
            b"g" => 1 + *fields.get(value)? as usize + 1,
            _ => return None,
        };
        if code == FIELD_REPLY_SERIAL && sig == b"u" {
            let b = fields.get(value..value + 4)?;
            return Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
        value += len;
        at = value.next_multiple_of(8);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private bus (`dbus-daemon --session`) in a temporary directory: the
    /// bus's own name has an owner, firewalld's does not.
    #[test]
    fn a_private_bus_answers_name_has_owner() {
        if !Path::new("/usr/bin/dbus-daemon").exists() {
            eprintln!("skipped: dbus-daemon not installed (Debian package dbus-daemon)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let mut daemon = std::process::Command::new("/usr/bin/dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let answers = (
            name_has_owner(&socket, "org.freedesktop.DBus"),
            name_has_owner(&socket, "org.fedoraproject.FirewallD1"),
        );
        let _ = daemon.kill();
        let _ = daemon.wait();
        assert_eq!((answers.0.unwrap(), answers.1.unwrap()), (true, false));
        let e = name_has_owner(&dir.path().join("none"), "x").unwrap_err();
        assert!(e.to_string().contains("connect"), "{e}");
    }

    #[test]
    fn a_call_is_laid_out_as_the_spec_says() {
        let call = bus_call(2, "NameHasOwner", Some("a.b"));
        assert_eq!(&call[..4], &[b'l', 1, 0, 1]);
        // The body: the string's length, "a.b", NUL; it starts 8-aligned.
        assert_eq!(u32::from_le_bytes([call[4], call[5], call[6], call[7]]), 8);
        assert_eq!(&call[call.len() - 8..], &[3, 0, 0, 0, b'a', b'.', b'b', 0]);
        assert_eq!(
            u32::from_le_bytes([call[8], call[9], call[10], call[11]]),
            2
        );
    }
}
