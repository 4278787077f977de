//! embedrt's gRPC API (`embedrt/v1/embedrt.proto`): the messages, the `Embedder` client for
//! callers, and the server trait the `embedrt` binary implements.

#![deny(missing_docs)]

/// The `embedrt.v1` package.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("embedrt.v1");

    /// The encoded file descriptor set of `embedrt.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("embedrt_descriptor");
}
