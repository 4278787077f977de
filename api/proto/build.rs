//! Generates the embedrt.v1 messages, client and server with the protoc binary vendored from
//! crates.io, so that building needs no protoc on the machine.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    std::env::set_var("PROTOC", protoc);
    let descriptors = PathBuf::from(std::env::var("OUT_DIR")?).join("embedrt_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptors)
        .compile_protos(&["embedrt/v1/embedrt.proto"], &["."])?;
    println!("cargo:rerun-if-changed=embedrt/v1/embedrt.proto");
    Ok(())
}
