//! Generated protobuf messages and gRPC stubs for reco, from `proto/`.
//!
//! The seed contract (`proto/reco.proto`, no package) lands in [`seed`]; the services added by
//! reco (`proto/reco_v1.proto`, package `reco.v1`) in [`v1`]. tonic client stubs
//! (`XClient::new(channel)`) need the `client` feature; server stubs and
//! [`FILE_DESCRIPTOR_SET`] the `server` feature. Without features the crate is the prost
//! messages alone, for the wasm page (which has its own small gRPC-Web client).

/// The seed contract: `UserRecommend.user_recommend` and its messages, wire-compatible with
/// the tutorial's `reco.proto`.
pub mod seed {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// Services that reco adds: `Catalog`, `Tracking`.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/reco.v1.rs"));
}

/// Encoded `FileDescriptorSet` of every proto file, for gRPC server reflection.
#[cfg(feature = "server")]
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reco_descriptor.bin"));
