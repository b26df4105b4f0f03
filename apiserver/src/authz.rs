//! Authorization: may this certificate identity do this to this object?
//!
//! A pure decision over the caller's identity (read from its verified client certificate), the
//! request and — for node-scoped rules — the object as stored now and the tasks assigned to the
//! caller's node. The rules are Swarm's, written as RBAC would write them:
//!
//! * **admin** and **manager** identities may do everything;
//! * a **controller** (CN = the controller's name) may read every kind except secrets and
//!   configs, take part in leader election (`Lease`), and write only the kinds and parts it
//!   owns in the task pipeline (DESIGN §4); `gitops` may write what a stack apply writes;
//! * a **node** (worker; CN = node name) may read its own `Node`, the `Task`s assigned to it
//!   (lists and watches must be filtered with `fieldSelector=spec.nodeName=<self>`), and the
//!   secrets, configs and networks those tasks reference; it may write only its own Node's
//!   status and its own Tasks' status. Everything else is 403.

use swarm_api::{AnyObject, Kind, Task};
use swarm_pki::{Identity, Role};

/// What the request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    /// A write to the `/status` subresource.
    UpdateStatus,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::UpdateStatus => "update the status of",
            Verb::Delete => "delete",
        }
    }

    fn reads(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

/// One request, as far as authorization needs to know it.
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    pub verb: Verb,
    pub kind: Kind,
    /// The object's name; `None` for list, watch and stack-wide operations.
    pub name: Option<&'a str>,
    /// For list and watch: the value of a `spec.nodeName=` field selector, if any.
    pub node_selector: Option<&'a str>,
    /// The object as stored now, when it exists (node-scoped writes check whose it is).
    pub current: Option<&'a AnyObject>,
}

/// A refusal, with the sentence the 403 `Status` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied(pub String);

/// The controller identities these rules know: a controller certificate is issued only for
/// one of them (`POST /v1/certificates`).
pub const CONTROLLERS: &[&str] = &[
    "replication",
    "ipam",
    "placement",
    "update",
    "nodes",
    "gc",
    "gitops",
];

/// The kinds each controller writes, and how (DESIGN §4: who writes which field).
fn controller_may_write(controller: &str, verb: Verb, kind: Kind) -> bool {
    use Kind::*;
    use Verb::*;
    match (controller, kind) {
        (_, Lease) => matches!(verb, Create | Update | Delete),
        ("replication", Task) => matches!(verb, Create | Update | UpdateStatus | Delete),
        ("replication", Service) => verb == UpdateStatus,
        // ipam makes the `ingress` network itself when none exists.
        ("ipam", Network) => matches!(verb, Create | UpdateStatus),
        ("ipam", Service) => verb == UpdateStatus,
        ("ipam", Task) => matches!(verb, Update | UpdateStatus),
        ("placement", Task) => matches!(verb, Update | UpdateStatus),
        ("update", Task) => matches!(verb, Create | Update | UpdateStatus | Delete),
        ("update", Service) => matches!(verb, Update | UpdateStatus),
        ("nodes", Node) => verb == UpdateStatus,
        ("nodes", Task) => matches!(verb, Update | UpdateStatus),
        ("gc", Task) => matches!(verb, Update | Delete),
        ("gc", Service | Network | Secret | Config) => verb == Update,
        ("gitops", GitSync) => verb == UpdateStatus,
        ("gitops", Network | Secret | Config | Service) => matches!(verb, Create | Update | Delete),
        _ => false,
    }
}

fn denied(who: &Identity, access: &Access<'_>, why: &str) -> Denied {
    let what = match access.name {
        Some(name) => format!("{}/{name}", access.kind.plural()),
        None => access.kind.plural().to_string(),
    };
    Denied(format!(
        "{} {} may not {} {what}: {why}",
        match who.role {
            Role::Worker => "node",
            Role::Controller => "controller",
            Role::Admin => "user",
            Role::Manager => "manager",
        },
        who.id,
        access.verb.as_str(),
    ))
}

/// Decides a request. `node_tasks` lists the tasks assigned to a node; it is called only for
/// a node reading a secret, config or network.
pub fn authorize(
    who: &Identity,
    access: &Access<'_>,
    node_tasks: &dyn Fn(&str) -> Vec<Task>,
) -> Result<(), Denied> {
    match who.role {
        Role::Admin | Role::Manager => Ok(()),
        Role::Controller => authorize_controller(who, access),
        Role::Worker => authorize_node(who, access, node_tasks),
    }
}

fn authorize_controller(who: &Identity, access: &Access<'_>) -> Result<(), Denied> {
    if access.verb.reads() {
        if matches!(access.kind, Kind::Secret | Kind::Config) && who.id != "gitops" {
            return Err(denied(
                who,
                access,
                "controllers do not read secret or config data",
            ));
        }
        return Ok(());
    }
    if controller_may_write(&who.id, access.verb, access.kind) {
        Ok(())
    } else {
        Err(denied(
            who,
            access,
            "it is not the controller that owns this part of the object",
        ))
    }
}

/// The node a stored object belongs to, for the kinds a node may write.
fn owner_node(obj: &AnyObject) -> Option<&str> {
    match obj {
        AnyObject::Node(n) => Some(n.metadata.name.as_str()),
        AnyObject::Task(t) => t.spec.node_name.as_deref(),
        _ => None,
    }
}

fn references(task: &Task, kind: Kind, name: &str) -> bool {
    let template = &task.spec.template;
    match kind {
        Kind::Secret => template.container.secrets.iter().any(|r| r.source == name),
        Kind::Config => template.container.configs.iter().any(|r| r.source == name),
        Kind::Network => {
            task.spec.networks.iter().any(|n| n.network == name)
                || template.networks.iter().any(|n| n.target == name)
        }
        _ => false,
    }
}

fn authorize_node(
    who: &Identity,
    access: &Access<'_>,
    node_tasks: &dyn Fn(&str) -> Vec<Task>,
) -> Result<(), Denied> {
    let me = who.id.as_str();
    let mine = |current: Option<&AnyObject>| current.and_then(owner_node) == Some(me);
    match (access.kind, access.verb) {
        (Kind::Node, Verb::Get | Verb::UpdateStatus) if access.name == Some(me) => Ok(()),
        (Kind::Task, Verb::List | Verb::Watch) if access.node_selector == Some(me) => Ok(()),
        (Kind::Task, Verb::List | Verb::Watch) => Err(denied(
            who,
            access,
            &format!("a node lists only its own tasks (fieldSelector=spec.nodeName={me})"),
        )),
        (Kind::Task, Verb::Get | Verb::UpdateStatus) if mine(access.current) => Ok(()),
        (Kind::Task, Verb::Get | Verb::UpdateStatus) => {
            Err(denied(who, access, "the task is not assigned to this node"))
        }
        (Kind::Secret | Kind::Config | Kind::Network, Verb::Get) => {
            let name = access.name.unwrap_or_default();
            if node_tasks(me)
                .iter()
                .any(|t| references(t, access.kind, name))
            {
                Ok(())
            } else {
                Err(denied(
                    who,
                    access,
                    "no task assigned to this node references it",
                ))
            }
        }
        _ => Err(denied(
            who,
            access,
            "nodes may read only what their tasks need and write only their own status",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{FileReference, Node, ObjectMeta};

    fn node(name: &str) -> Identity {
        Identity::new(name, Role::Worker, "c1")
    }

    fn task(name: &str, node: &str, secret: &str) -> Task {
        let mut t = Task {
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            ..Default::default()
        };
        t.spec.node_name = Some(node.into());
        t.spec.template.container.secrets.push(FileReference {
            source: secret.into(),
            target: secret.into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        });
        t
    }

    fn tasks(node: &str) -> Vec<Task> {
        match node {
            "a" => vec![task("web.1.1", "a", "db-pass")],
            "b" => vec![task("web.2.1", "b", "api-key")],
            _ => vec![],
        }
    }

    fn access<'a>(verb: Verb, kind: Kind, name: Option<&'a str>) -> Access<'a> {
        Access {
            verb,
            kind,
            name,
            node_selector: None,
            current: None,
        }
    }

    #[test]
    fn admins_and_managers_may_do_everything() {
        for role in [Role::Admin, Role::Manager] {
            let who = Identity::new("x", role, "c1");
            for kind in Kind::ALL {
                assert!(authorize(&who, &access(Verb::Delete, kind, Some("n")), &tasks).is_ok());
            }
        }
    }

    #[test]
    fn a_node_reads_and_writes_only_its_own() {
        let a = node("a");
        let ta = AnyObject::Task(Box::new(task("web.1.1", "a", "db-pass")));
        let tb = AnyObject::Task(Box::new(task("web.2.1", "b", "api-key")));

        // Its own task: read and report status. B's task: neither.
        let mut acc = access(Verb::UpdateStatus, Kind::Task, Some("web.1.1"));
        acc.current = Some(&ta);
        assert!(authorize(&a, &acc, &tasks).is_ok());
        acc.name = Some("web.2.1");
        acc.current = Some(&tb);
        let err = authorize(&a, &acc, &tasks).unwrap_err();
        assert_eq!(
            err.0,
            "node a may not update the status of tasks/web.2.1: the task is not assigned to this node"
        );
        acc.verb = Verb::Get;
        assert!(authorize(&a, &acc, &tasks).is_err());

        // Lists of tasks must be scoped to itself.
        let mut list = access(Verb::Watch, Kind::Task, None);
        assert!(authorize(&a, &list, &tasks).is_err());
        list.node_selector = Some("b");
        assert!(authorize(&a, &list, &tasks).is_err());
        list.node_selector = Some("a");
        assert!(authorize(&a, &list, &tasks).is_ok());

        // Secrets its tasks reference, and no others.
        assert!(
            authorize(
                &a,
                &access(Verb::Get, Kind::Secret, Some("db-pass")),
                &tasks
            )
            .is_ok()
        );
        let err = authorize(
            &a,
            &access(Verb::Get, Kind::Secret, Some("api-key")),
            &tasks,
        )
        .unwrap_err();
        assert!(
            err.0
                .contains("no task assigned to this node references it"),
            "{err:?}"
        );
        assert!(authorize(&a, &access(Verb::List, Kind::Secret, None), &tasks).is_err());

        // Its own Node status only; creating a service never.
        let na = AnyObject::Node(Node {
            metadata: ObjectMeta {
                name: "a".into(),
                ..Default::default()
            },
            ..Default::default()
        });
        let mut own = access(Verb::UpdateStatus, Kind::Node, Some("a"));
        own.current = Some(&na);
        assert!(authorize(&a, &own, &tasks).is_ok());
        assert!(
            authorize(
                &a,
                &access(Verb::UpdateStatus, Kind::Node, Some("b")),
                &tasks
            )
            .is_err()
        );
        assert!(authorize(&a, &access(Verb::Update, Kind::Node, Some("a")), &tasks).is_err());
        let err =
            authorize(&a, &access(Verb::Create, Kind::Service, Some("x")), &tasks).unwrap_err();
        assert!(
            err.0.starts_with("node a may not create services/x"),
            "{err:?}"
        );
    }

    #[test]
    fn controllers_write_only_what_they_own() {
        let placement = Identity::new("placement", Role::Controller, "c1");
        assert!(
            authorize(
                &placement,
                &access(Verb::Update, Kind::Task, Some("t")),
                &tasks
            )
            .is_ok()
        );
        assert!(authorize(&placement, &access(Verb::Watch, Kind::Node, None), &tasks).is_ok());
        assert!(
            authorize(
                &placement,
                &access(Verb::Create, Kind::Lease, Some("placement")),
                &tasks
            )
            .is_ok()
        );
        assert!(
            authorize(
                &placement,
                &access(Verb::Create, Kind::Task, Some("t")),
                &tasks
            )
            .is_err()
        );
        assert!(
            authorize(
                &placement,
                &access(Verb::Update, Kind::Service, Some("s")),
                &tasks
            )
            .is_err()
        );
        assert!(
            authorize(
                &placement,
                &access(Verb::Get, Kind::Secret, Some("s")),
                &tasks
            )
            .is_err()
        );

        // ipam creates the ingress network, and may not delete networks.
        let ipam = Identity::new("ipam", Role::Controller, "c1");
        let can = |verb| authorize(&ipam, &access(verb, Kind::Network, Some("ingress")), &tasks);
        assert!(can(Verb::Create).is_ok());
        assert!(can(Verb::UpdateStatus).is_ok());
        assert!(can(Verb::Delete).is_err());
        assert!(can(Verb::Update).is_err());

        let replication = Identity::new("replication", Role::Controller, "c1");
        assert!(
            authorize(
                &replication,
                &access(Verb::Create, Kind::Task, Some("t")),
                &tasks
            )
            .is_ok()
        );
        assert!(
            authorize(
                &replication,
                &access(Verb::UpdateStatus, Kind::Service, Some("s")),
                &tasks
            )
            .is_ok()
        );
        assert!(
            authorize(
                &replication,
                &access(Verb::Update, Kind::Service, Some("s")),
                &tasks
            )
            .is_err()
        );

        let stranger = Identity::new("miner", Role::Controller, "c1");
        assert!(
            authorize(
                &stranger,
                &access(Verb::Update, Kind::Task, Some("t")),
                &tasks
            )
            .is_err()
        );
    }
}
