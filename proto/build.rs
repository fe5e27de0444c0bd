//! Generates the protobuf and tonic code for `proto/audit.proto` and `proto/approvals.proto` with a vendored `protoc`,
//! so building needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/audit.proto");
    println!("cargo:rerun-if-changed=proto/approvals.proto");
    tonic_build::configure()
        .compile_protos(&["proto/audit.proto", "proto/approvals.proto"], &["proto"])?;
    Ok(())
}
