//! One module per kind; `define_kind!` writes the envelope (`apiVersion`, `kind`, `metadata`,
//! `spec`, `status`) that every kind shares.

mod config;
mod gitsync;
mod lease;
mod network;
mod node;
mod service;
mod task;

pub use config::*;
pub use gitsync::*;
pub use lease::*;
pub use network::*;
pub use node::*;
pub use service::*;
pub use task::*;

/// Writes the object struct of a kind and its `Resource` impl.
///
/// `kind` and `apiVersion` may be omitted on input (the apiserver knows them from the URL);
/// `normalize()` sets both so what is stored and served always carries them.
macro_rules! define_kind {
    ($(#[$doc:meta])* $name:ident, spec: $spec:ty $(, status: $status:ty)?) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            pub metadata: $crate::ObjectMeta,
            #[serde(default)]
            pub spec: $spec,
            $(
                #[serde(default)]
                pub status: $status,
            )?
        }

        impl $name {
            /// A new object with the given name and spec (status empty).
            // Kinds without a status have no field left for `..Default::default()` to fill.
            #[allow(clippy::needless_update)]
            pub fn new(name: impl Into<String>, spec: $spec) -> Self {
                $name {
                    api_version: $crate::API_VERSION.to_string(),
                    kind: stringify!($name).to_string(),
                    metadata: $crate::ObjectMeta::named(name),
                    spec,
                    ..Default::default()
                }
            }

            /// Sets `apiVersion` and `kind` to their only valid values.
            pub fn normalize(&mut self) {
                self.api_version = $crate::API_VERSION.to_string();
                self.kind = stringify!($name).to_string();
            }
        }

        impl $crate::Resource for $name {
            const KIND: $crate::Kind = $crate::Kind::$name;
            fn meta(&self) -> &$crate::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut $crate::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use define_kind;
