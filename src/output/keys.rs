//! The keys each kind of event has in its JSON Lines form. Display filters and `-T fields`
//! use them to know which kinds of event a field can belong to (so that the others need not be
//! built), and to refuse a field no event has. The JSON Lines writer checks every key it
//! writes against its kind's list in debug builds, and `tests/summary.rs` checks every key of
//! every event of every capture.

/// Every key a frame event can have: a display filter on any other field is false for every
/// frame, so frames need not be built for it (nor messages and calls, with the lists below).
pub const FRAME: &[&str] = &[
    "event",
    "packet",
    "ts",
    "conn",
    "src",
    "dst",
    "stream",
    "type",
    "type_code",
    "flags",
    "flag_names",
    "length",
    "data_length",
    "pad_length",
    "missing",
    "priority",
    "error_code",
    "error_name",
    "ack",
    "settings",
    "setting_names",
    "promised_stream",
    "opaque",
    "last_stream_id",
    "debug_data",
    "increment",
    "malformed",
    "headers",
    "table_size_updates",
    "notes",
    "raw",
];

/// Every key a message event can have.
pub const MESSAGE: &[&str] = &[
    "event",
    "packet",
    "ts",
    "conn",
    "src",
    "dst",
    "stream",
    "path",
    "dir",
    "index",
    "compressed",
    "encoding",
    "length",
    "type",
    "json",
    "fields",
    "problem",
    "harvested",
    "raw",
];

/// Every key a call event can have.
pub const CALL: &[&str] = &[
    "event",
    "conn",
    "stream",
    "client",
    "server",
    "method",
    "path",
    "authority",
    "status",
    "grpc_status",
    "grpc_status_name",
    "grpc_message",
    "start_ts",
    "end_ts",
    "duration",
    "request_end_ts",
    "response_start_ts",
    "time_to_response",
    "deadline",
    "start_packet",
    "end_packet",
    "request_bytes",
    "response_bytes",
    "end",
    "reset_by",
    "error_code",
    "goaway_last_stream_id",
    "request_stopped",
    "reset_at_deadline",
    "pushed",
    "upgraded",
    "tls",
    "request_headers",
    "response_headers",
    "request_trailers",
    "trailers",
    "grpc",
    "request_messages",
    "response_messages",
    "grpc_status_details",
    "binary_metadata",
    "notes",
];

/// Every key a gap event can have.
pub const GAP: &[&str] = &["event", "packet", "ts", "conn", "src", "dst", "bytes"];

/// Every key an error event can have.
pub const ERROR: &[&str] = &[
    "event", "packet", "ts", "conn", "src", "dst", "stream", "kind", "message",
];

/// Every key a connection event can have.
pub const CONNECTION: &[&str] = &[
    "event",
    "conn",
    "client",
    "server",
    "protocol",
    "start_ts",
    "end_ts",
    "duration",
    "bytes_to_server",
    "bytes_to_client",
    "packets",
    "end",
    "end_by",
    "closed_first_by",
    "closed_first_ts",
    "joined_mid_way",
    "tls",
    "initial_rtt",
    "initial_rtt_to_server",
    "initial_rtt_to_client",
    "capture_point",
    "tcp_analysis",
];

/// The `event` names of the events a display filter sees.
pub const EVENT_KINDS: [&str; 6] = ["frame", "message", "call", "gap", "error", "connection"];

/// The keys a kind of event (its `event` name) may have.
pub fn keys_of(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "frame" => Some(FRAME),
        "message" => Some(MESSAGE),
        "call" => Some(CALL),
        "gap" => Some(GAP),
        "error" => Some(ERROR),
        "connection" => Some(CONNECTION),
        _ => None,
    }
}

/// Whether some kind of event has this top-level key.
pub fn is_event_key(key: &str) -> bool {
    EVENT_KINDS
        .iter()
        .filter_map(|k| keys_of(k))
        .any(|keys| keys.contains(&key))
}
