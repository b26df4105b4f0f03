//! One module per `swarm` subcommand.

pub mod apply;
pub mod convert;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod get;
pub mod schema;
pub mod server;
pub mod validate;
