//! Main plugins: they create or set up the interface in the container.

pub mod loopback;
