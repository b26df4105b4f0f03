//! Sessions: one per registered node. A node that registers again gets a new session and the
//! old one ends (its assignment stream closes), as in SwarmKit.
//!
//! Identity: over mTLS the node is the common name of its client certificate
//! ([`identity_from_peer`]): it registers under that name whatever it asks for, and a session
//! is accepted only from the node it belongs to. Without TLS (tests, in-process benchmarks) a
//! request names its node through its session id.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// One live session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub node: String,
    /// Flips to `true` when the session is replaced or dropped.
    pub ended: watch::Receiver<bool>,
}

struct Entry {
    session: Session,
    end: watch::Sender<bool>,
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Entry>>,
}

/// Why a request's session is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("unknown session {0:?}; register again")]
    Unknown(String),
    #[error("session {session:?} belongs to node {owner:?}, not {caller:?}")]
    WrongNode {
        session: String,
        owner: String,
        caller: String,
    },
}

impl Sessions {
    /// Opens a session for `node`, ending any earlier session of the same node.
    pub fn open(&self, node: &str) -> Session {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (end, ended) = watch::channel(false);
        let session = Session {
            id: id.clone(),
            node: node.to_string(),
            ended,
        };
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, e| {
            if e.session.node == node {
                e.end.send_replace(true);
                false
            } else {
                true
            }
        });
        map.insert(
            id,
            Entry {
                session: session.clone(),
                end,
            },
        );
        session
    }

    /// The session `id`, checked against the caller's identity when it has one.
    pub fn get(&self, id: &str, caller: Option<&str>) -> Result<Session, SessionError> {
        let map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .get(id)
            .ok_or_else(|| SessionError::Unknown(id.to_string()))?;
        if let Some(caller) = caller
            && caller != entry.session.node
        {
            return Err(SessionError::WrongNode {
                session: id.to_string(),
                owner: entry.session.node.clone(),
                caller: caller.to_string(),
            });
        }
        Ok(entry.session.clone())
    }

    /// Ends every session (shutdown).
    pub fn end_all(&self) {
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        for (_, e) in map.drain() {
            e.end.send_replace(true);
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The node a request comes from, proven by transport security: the common name of the
/// verified client certificate (`Ok(None)` without TLS). Only node certificates (worker or
/// manager) may act as nodes; an admin's or a controller's certificate is refused.
pub fn identity_from_peer<T>(req: &tonic::Request<T>) -> Result<Option<String>, tonic::Status> {
    let Some(certs) = req.peer_certs() else {
        return Ok(None);
    };
    let leaf = certs.first().ok_or_else(|| {
        tonic::Status::unauthenticated("not authenticated: no client certificate")
    })?;
    let id = swarm_pki::Identity::from_cert_der(leaf).map_err(|e| {
        tonic::Status::unauthenticated(format!(
            "not authenticated: the client certificate has no swarm identity ({e})"
        ))
    })?;
    match id.role {
        swarm_pki::Role::Worker | swarm_pki::Role::Manager => Ok(Some(id.id)),
        role => Err(tonic::Status::permission_denied(format!(
            "{} is a {role} certificate; only node certificates (from `swarm join`) may talk \
             to the dispatcher",
            id.id
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_session_of_a_node_ends_the_old_one() {
        let s = Sessions::default();
        let a = s.open("n1");
        let b = s.open("n2");
        let a2 = s.open("n1");
        assert!(*a.ended.borrow());
        assert!(!*b.ended.borrow());
        assert_eq!(
            s.get(&a.id, None).unwrap_err(),
            SessionError::Unknown(a.id.clone())
        );
        assert_eq!(s.get(&a2.id, None).unwrap().node, "n1");
        assert!(matches!(
            s.get(&a2.id, Some("n2")),
            Err(SessionError::WrongNode { .. })
        ));
        assert_eq!(s.len(), 2);
    }
}
