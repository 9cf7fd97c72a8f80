//! Arbitrary bytes as a pcap/pcapng file, through the whole pipeline and both outputs.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    common::dissect_and_render(data.to_vec());
});
