//! The kinds of object swarm stores, the `Resource` trait that gives generic code access to
//! their metadata, and `AnyObject`, an object of any kind (as read from a manifest or a watch).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    ObjectMeta,
    objects::{Config, GitSync, Lease, Network, Node, Secret, Service, Task},
};

/// Every kind swarm stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Node,
    Network,
    Secret,
    Config,
    Service,
    Task,
    Lease,
    GitSync,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Node,
        Kind::Network,
        Kind::Secret,
        Kind::Config,
        Kind::Service,
        Kind::Task,
        Kind::Lease,
        Kind::GitSync,
    ];

    /// The name as written in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Network => "Network",
            Kind::Secret => "Secret",
            Kind::Config => "Config",
            Kind::Service => "Service",
            Kind::Task => "Task",
            Kind::Lease => "Lease",
            Kind::GitSync => "GitSync",
        }
    }

    /// The path segment in the REST API: `/v1/<plural>`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Node => "nodes",
            Kind::Network => "networks",
            Kind::Secret => "secrets",
            Kind::Config => "configs",
            Kind::Service => "services",
            Kind::Task => "tasks",
            Kind::Lease => "leases",
            Kind::GitSync => "gitsyncs",
        }
    }

    /// The store key prefix of this kind: `/registry/<plural>/`.
    pub fn key_prefix(self) -> String {
        format!("/registry/{}/", self.plural())
    }

    /// The store key of one object: `/registry/<plural>/<name>`.
    pub fn key(self, name: &str) -> String {
        format!("/registry/{}/{}", self.plural(), name)
    }

    pub fn from_plural(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == s)
    }

    /// Whether objects of this kind have a `status` subresource users must not write.
    pub fn has_status(self) -> bool {
        !matches!(self, Kind::Secret | Kind::Config | Kind::Lease)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a kind name no one knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown kind {0:?}; known kinds: Node, Network, Secret, Config, Service, Task, Lease, GitSync"
)]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Accepts `Service`, `service`, `services`, `svc`, as kubectl does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let short = match lower.as_str() {
            "svc" => Some(Kind::Service),
            "no" => Some(Kind::Node),
            "net" => Some(Kind::Network),
            _ => None,
        };
        short
            .or_else(|| {
                Kind::ALL
                    .into_iter()
                    .find(|k| k.name().eq_ignore_ascii_case(&lower) || k.plural() == lower)
            })
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// What generic code (the apiserver, the controller runtime, the CLI) needs of every kind.
pub trait Resource:
    Serialize + for<'de> Deserialize<'de> + Clone + fmt::Debug + Send + Sync + 'static
{
    const KIND: Kind;
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn name(&self) -> &str {
        &self.meta().name
    }
}

/// An object of any kind. Serialized as the object itself (its `kind` field says which).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnyObject {
    Node(Node),
    Network(Network),
    Secret(Secret),
    Config(Config),
    Service(Box<Service>),
    Task(Box<Task>),
    Lease(Lease),
    GitSync(GitSync),
}

/// Why a JSON value is not a valid object.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("missing `kind`")]
    MissingKind,
    #[error(transparent)]
    UnknownKind(#[from] UnknownKind),
    #[error("apiVersion must be {expected:?}, found {found:?}")]
    WrongApiVersion { expected: String, found: String },
    #[error("{0}")]
    Decode(#[from] serde_json::Error),
}

impl AnyObject {
    /// Decodes an object, choosing the type by its `kind` field.
    pub fn from_value(value: serde_json::Value) -> Result<AnyObject, ObjectError> {
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or(ObjectError::MissingKind)?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or_else(|| UnknownKind(kind.to_string()))?;
        if let Some(v) = value.get("apiVersion").and_then(|v| v.as_str())
            && v != crate::API_VERSION
        {
            return Err(ObjectError::WrongApiVersion {
                expected: crate::API_VERSION.to_string(),
                found: v.to_string(),
            });
        }
        Ok(match kind {
            Kind::Node => AnyObject::Node(serde_json::from_value(value)?),
            Kind::Network => AnyObject::Network(serde_json::from_value(value)?),
            Kind::Secret => AnyObject::Secret(serde_json::from_value(value)?),
            Kind::Config => AnyObject::Config(serde_json::from_value(value)?),
            Kind::Service => AnyObject::Service(Box::new(serde_json::from_value(value)?)),
            Kind::Task => AnyObject::Task(Box::new(serde_json::from_value(value)?)),
            Kind::Lease => AnyObject::Lease(serde_json::from_value(value)?),
            Kind::GitSync => AnyObject::GitSync(serde_json::from_value(value)?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            AnyObject::Node(_) => Kind::Node,
            AnyObject::Network(_) => Kind::Network,
            AnyObject::Secret(_) => Kind::Secret,
            AnyObject::Config(_) => Kind::Config,
            AnyObject::Service(_) => Kind::Service,
            AnyObject::Task(_) => Kind::Task,
            AnyObject::Lease(_) => Kind::Lease,
            AnyObject::GitSync(_) => Kind::GitSync,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            AnyObject::Node(o) => &o.metadata,
            AnyObject::Network(o) => &o.metadata,
            AnyObject::Secret(o) => &o.metadata,
            AnyObject::Config(o) => &o.metadata,
            AnyObject::Service(o) => &o.metadata,
            AnyObject::Task(o) => &o.metadata,
            AnyObject::Lease(o) => &o.metadata,
            AnyObject::GitSync(o) => &o.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            AnyObject::Node(o) => &mut o.metadata,
            AnyObject::Network(o) => &mut o.metadata,
            AnyObject::Secret(o) => &mut o.metadata,
            AnyObject::Config(o) => &mut o.metadata,
            AnyObject::Service(o) => &mut o.metadata,
            AnyObject::Task(o) => &mut o.metadata,
            AnyObject::Lease(o) => &mut o.metadata,
            AnyObject::GitSync(o) => &mut o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.meta().name
    }

    /// `service/voting_vote`, as kubectl prints objects.
    pub fn reference(&self) -> String {
        format!(
            "{}/{}",
            self.kind().name().to_ascii_lowercase(),
            self.name()
        )
    }

    pub fn to_value(&self) -> serde_json::Value {
        // Serializing plain data structures to a Value cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        AnyObject::from_value(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_parse_like_kubectl() {
        assert_eq!("svc".parse::<Kind>().unwrap(), Kind::Service);
        assert_eq!("services".parse::<Kind>().unwrap(), Kind::Service);
        assert_eq!("Service".parse::<Kind>().unwrap(), Kind::Service);
        assert_eq!("gitsync".parse::<Kind>().unwrap(), Kind::GitSync);
        assert!("pods".parse::<Kind>().is_err());
    }

    #[test]
    fn plural_round_trips() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_plural(k.plural()), Some(k));
            assert_eq!(k.key("x"), format!("{}x", k.key_prefix()));
        }
    }
}
