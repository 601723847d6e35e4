//! The fake kernel's place in a build without the `fake` feature (the shipped
//! binary): types with no values, so `Kernel` is always the real kernel and every
//! fake branch compiles away. Tests enable the feature and get `fake/`.

use netlink_packet_route::RouteNetlinkMessage;

use crate::{NetNs, Result};

/// Cannot exist without the `fake` feature.
#[derive(Debug, Clone)]
pub enum FakeKernel {}

/// Cannot exist without the `fake` feature.
pub(crate) enum Socket {}

impl FakeKernel {
    pub(crate) fn open(&self, _path: &str) -> Result<NetNs> {
        match *self {}
    }

    pub fn host(&self) -> NetNs {
        match *self {}
    }

    pub(crate) fn socket(&self, _netns: &NetNs) -> Result<Socket> {
        match *self {}
    }

    pub(crate) fn add_tap(&self, _netns: &NetNs, _name: &str) -> Result<()> {
        match *self {}
    }

    pub(crate) fn sysctl_read(&self, _netns: &NetNs, _name: &str) -> Result<String> {
        match *self {}
    }

    pub(crate) fn sysctl_write(&self, _netns: &NetNs, _name: &str, _value: &str) -> Result<()> {
        match *self {}
    }
}

impl Socket {
    pub(crate) fn handle(
        &self,
        _message: RouteNetlinkMessage,
        _flags: u16,
    ) -> std::result::Result<Vec<RouteNetlinkMessage>, i32> {
        match *self {}
    }
}
