//! Compiles `proto/*.proto` with protox (pure Rust, no `protoc` needed) and tonic-prost-build.
//! Client stubs are generated with the `client` feature, server stubs and the reflection
//! descriptor set with `server`; without either, only the messages (the wasm page's build).

use std::{env, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &["reco.proto", "reco_v1.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", proto_dir.join(file).display());
    }
    let server = env::var_os("CARGO_FEATURE_SERVER").is_some();
    let client = env::var_os("CARGO_FEATURE_CLIENT").is_some();
    let fds = protox::compile(PROTOS, [&proto_dir])?;
    if server {
        let out = PathBuf::from(env::var("OUT_DIR")?).join("reco_descriptor.bin");
        std::fs::write(out, fds.encode_to_vec())?;
    }
    tonic_prost_build::configure().build_server(server).build_client(client).build_transport(false).compile_fds(fds)?;
    Ok(())
}
