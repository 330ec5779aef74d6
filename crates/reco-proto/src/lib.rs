//! Generated protobuf messages and gRPC stubs for reco, from `proto/`.
//!
//! The seed contract (`proto/reco.proto`, no package) lands in [`seed`]; the services added by
//! reco (`proto/reco_v1.proto`, package `reco.v1`) in [`v1`]. Client stubs are transport-agnostic
//! (`XClient::new(channel)`), so the same code drives tonic's channel natively and a gRPC-Web
//! client in the browser. Server stubs and [`FILE_DESCRIPTOR_SET`] need the `server` feature.

/// The seed contract: `UserRecommend.user_recommend` and its messages, wire-compatible with
/// the tutorial's `reco.proto`.
pub mod seed {
    tonic::include_proto!("_");
}

/// Services that reco adds: `Catalog`, `Tracking`.
pub mod v1 {
    tonic::include_proto!("reco.v1");
}

/// Encoded `FileDescriptorSet` of every proto file, for gRPC server reflection.
#[cfg(feature = "server")]
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reco_descriptor.bin"));
