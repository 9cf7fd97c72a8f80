//! Analyses over the event stream: connection health and call statistics.

pub mod counts;
pub mod health;
pub mod kept;
pub mod latency;
pub mod parts;
pub mod stats;
