//! Generates the CRI v1 bindings from the vendored `proto/api.proto`.
//!
//! The proto is parsed by protox (pure Rust), so no `protoc` is needed on the build machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    let fds = protox::compile(["api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Servers implement only what they need; every other RPC answers Unimplemented.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
