//! HTTP/2: frames, HPACK, per-connection state and calls.

pub mod call;
pub mod connection;
pub mod frame;
pub mod hpack;
pub mod resync;
