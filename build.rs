//! Compiles the bundled schemas in `proto/` into a binary FileDescriptorSet with protox, so that
//! neither building nor running h2scope needs a `protoc` binary.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "grpc/health/v1/health.proto",
    "grpc/reflection/v1/reflection.proto",
    "grpc/reflection/v1alpha/reflection.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "servicestatus/healthcheck.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let bytes = protox::Compiler::new(["proto"])
        .and_then(|mut c| {
            c.include_imports(true);
            c.open_files(FILES)?;
            Ok(c.encode_file_descriptor_set())
        })
        .unwrap_or_else(|e| panic!("bundled schemas in proto/: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("bundled.fds");
    std::fs::write(&out, bytes).expect("writing bundled.fds");
}
