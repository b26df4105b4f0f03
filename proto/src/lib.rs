//! The dispatcher protocol between agents and the apiserver, generated from
//! `api/proto/dispatcher.proto`: messages, the tonic client and the tonic server trait.

#![allow(clippy::large_enum_variant)]

/// `swarm.dispatcher.v1`.
pub mod v1 {
    tonic::include_proto!("swarm.dispatcher.v1");
}

pub use v1::dispatcher_client::DispatcherClient;
pub use v1::dispatcher_server::{Dispatcher, DispatcherServer};
