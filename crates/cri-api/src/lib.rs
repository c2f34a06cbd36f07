//! CRI v1 (`runtime.v1`) gRPC bindings for tonic.
//!
//! Generated at build time from `proto/api.proto`, vendored unchanged from kubernetes/cri-api
//! `pkg/apis/runtime/v1/api.proto`. Both the client and the server side of `RuntimeService` and
//! `ImageService` are generated.

/// The `runtime` proto package family.
pub mod runtime {
    /// `runtime.v1`: messages, `runtime_service_{client,server}` and `image_service_{client,server}`.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
        tonic::include_proto!("runtime.v1");
    }
}
