//! Who a certificate belongs to: the subject fields swarm writes and reads back.
//!
//! As in Swarm, CN is the node id (or user/controller name), OU the role and O the cluster
//! id. The apiserver reads these from a verified peer certificate to authorize requests.

use std::fmt;
use std::str::FromStr;

use x509_parser::prelude::{FromDer, X509Certificate};

/// What a certificate's holder may do; written in the certificate's OU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs an apiserver; may do everything.
    Manager,
    /// Runs an agent; may read and write only what its node owns.
    Worker,
    /// A user with full rights (the admin credentials file).
    Admin,
    /// A controller process; may touch only the kinds it reconciles.
    Controller,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "swarm-manager",
            Role::Worker => "swarm-worker",
            Role::Admin => "swarm-admin",
            Role::Controller => "swarm-controller",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "swarm-manager" => Ok(Role::Manager),
            "swarm-worker" => Ok(Role::Worker),
            "swarm-admin" => Ok(Role::Admin),
            "swarm-controller" => Ok(Role::Controller),
            other => Err(IdentityError::UnknownRole(other.to_string())),
        }
    }
}

/// The holder of a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Node id, user or controller name (CN).
    pub id: String,
    pub role: Role,
    /// The cluster that issued it (O).
    pub cluster: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("the certificate has no {0} in its subject; it was not issued by a swarm CA")]
    Missing(&'static str),
    #[error("the certificate's role {0:?} is not one swarm issues")]
    UnknownRole(String),
}

impl Identity {
    pub fn new(id: impl Into<String>, role: Role, cluster: impl Into<String>) -> Self {
        Identity {
            id: id.into(),
            role,
            cluster: cluster.into(),
        }
    }

    /// Reads the identity from a DER certificate (e.g. a TLS peer's, already verified).
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
        let subject = cert.subject();
        let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>,
                     what: &'static str| {
            it.next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_string)
                .ok_or(IdentityError::Missing(what))
        };
        let id = first(&mut subject.iter_common_name(), "common name (CN)")?;
        let role = first(&mut subject.iter_organizational_unit(), "role (OU)")?.parse()?;
        let cluster = first(&mut subject.iter_organization(), "cluster id (O)")?;
        Ok(Identity { id, role, cluster })
    }
}

impl Identity {
    /// Reads the identity from a PEM certificate (the first one in `pem`).
    pub fn from_cert_pem(pem: &str) -> Result<Self, IdentityError> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| IdentityError::Parse(e.to_string()))?;
        Self::from_cert_der(&p.contents)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.role)
    }
}
