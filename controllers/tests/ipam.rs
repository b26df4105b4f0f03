//! The ipam controller against a real apiserver, including two ipam processes racing.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use swarm_api::meta::ConditionStatus;
use swarm_api::{
    Network, NetworkAttachmentConfig, NetworkSpec, PortConfig, Service, ServiceSpec, Task,
    TaskSpec, TaskState,
};
use swarm_client::Client;
use swarm_controllers::Options;
use swarm_controllers::ipam::ledger::addr_of;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);

struct Harness {
    _server: swarm_apiserver::server::RunningServer,
    client: Client,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn server() -> Harness {
    let (server, _store, client, dir) = common::apiserver().await;
    Harness {
        _server: server,
        client,
        stop: CancellationToken::new(),
        _dir: dir,
    }
}

impl Harness {
    /// Starts one ipam process (no leader election: racing is the point).
    fn ipam(&self, identity: &str) {
        let options = Options {
            identity: identity.into(),
            concurrency: 4,
            ..Options::default()
        };
        let (c, stop) = (self.client.clone(), self.stop.clone());
        tokio::spawn(swarm_controllers::ipam::controller::run(c, options, stop));
    }

    async fn network(&self, name: &str, subnet: Option<&str>) {
        let mut n = Network::new(name, NetworkSpec::default());
        n.spec.ipam.subnet = subnet.map(str::to_string);
        self.client.create(&n).await.unwrap();
    }

    async fn task(&self, name: &str, networks: &[&str]) {
        let mut t = Task::new(
            name,
            TaskSpec {
                service: "web".into(),
                desired_state: TaskState::Running,
                ..Default::default()
            },
        );
        t.spec.template.networks = networks
            .iter()
            .map(|n| NetworkAttachmentConfig {
                target: n.to_string(),
                ..Default::default()
            })
            .collect();
        self.client.create(&t).await.unwrap();
    }

    async fn service(&self, name: &str, networks: &[&str], ports: Vec<PortConfig>) {
        let mut s = Service::new(name, ServiceSpec::default());
        s.spec.task_template.container.image = "swarm-examples/hello:1".into();
        s.spec.task_template.networks = networks
            .iter()
            .map(|n| NetworkAttachmentConfig {
                target: n.to_string(),
                ..Default::default()
            })
            .collect();
        s.spec.endpoint.ports = ports;
        self.client.create(&s).await.unwrap();
    }

    async fn all<T: swarm_api::Resource>(&self) -> Vec<T> {
        self.client
            .list_all::<T>(&Default::default())
            .await
            .unwrap()
            .items
    }

    async fn until<T>(&self, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn port(target: u16, published: Option<u16>) -> PortConfig {
    PortConfig {
        target_port: target,
        published_port: published,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ipams_racing_never_hand_out_one_address_twice() {
    let h = server().await;
    for i in 0..6 {
        h.network(&format!("net{i}"), None).await;
    }
    h.network("user", Some("10.0.3.0/24")).await;
    h.service("web", &["net0", "net1"], vec![]).await;
    for i in 0..60 {
        let nets: &[&str] = if i % 2 == 0 {
            &["net0", "net1"]
        } else {
            &["net0"]
        };
        h.task(&format!("web.{i}.1"), nets).await;
    }
    h.ipam("ipam-a");
    h.ipam("ipam-b");

    let tasks: Vec<Task> = h
        .until("every task pending", async || {
            let ts: Vec<Task> = h.all().await;
            ts.iter()
                .all(|t| t.status.state == TaskState::Pending)
                .then_some(ts)
        })
        .await;
    let svc: Service = h
        .until("the VIPs", async || {
            let s = h.client.get::<Service>("web").await.ok()?;
            (s.status.virtual_ips.len() == 2).then_some(s)
        })
        .await;
    let networks: Vec<Network> = h.all().await;

    // Subnets: all different; the user's honoured.
    let subnets: HashSet<&str> = networks.iter().map(|n| n.status.subnet.as_str()).collect();
    assert_eq!(subnets.len(), 7, "{subnets:?}");
    assert!(subnets.contains("10.0.3.0/24"));

    // Addresses: one owner each, and every ledger says exactly who holds what.
    for net in &networks {
        let name = net.metadata.name.as_str();
        let mut holders: HashMap<String, String> = HashMap::new();
        for t in &tasks {
            for a in t.spec.networks.iter().filter(|a| a.network == name) {
                for cidr in &a.addresses {
                    let prev = holders.insert(
                        addr_of(cidr).to_string(),
                        format!("task/{}", t.metadata.name),
                    );
                    assert!(
                        prev.is_none(),
                        "{cidr} on {name} handed out twice: {prev:?}"
                    );
                }
            }
        }
        for v in svc.status.virtual_ips.iter().filter(|v| v.network == name) {
            let prev = holders.insert(addr_of(&v.addr).to_string(), "service/web".into());
            assert!(prev.is_none(), "VIP {} on {name} is also {prev:?}", v.addr);
        }
        let ledger: HashMap<String, String> = net.status.addresses.clone().into_iter().collect();
        assert_eq!(ledger, holders, "ledger of {name}");
    }
    let on_net0 = tasks
        .iter()
        .filter(|t| t.spec.networks.iter().any(|a| a.network == "net0"))
        .count();
    assert_eq!(on_net0, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_user_subnet_is_refused_until_the_other_goes() {
    let h = server().await;
    h.ipam("ipam");
    h.network("big", Some("10.20.0.0/16")).await;
    h.until("big allocated", async || {
        let n = h.client.get::<Network>("big").await.ok()?;
        (!n.status.subnet.is_empty()).then_some(())
    })
    .await;
    h.network("small", Some("10.20.5.0/24")).await;
    let n = h
        .until("small refused", async || {
            let n = h.client.get::<Network>("small").await.ok()?;
            n.status
                .conditions
                .iter()
                .any(|c| c.type_ == "Allocated" && c.status == ConditionStatus::False)
                .then_some(n)
        })
        .await;
    let c = &n.status.conditions[0];
    assert_eq!(c.reason, "SubnetOverlap");
    assert_eq!(
        c.message,
        "subnet 10.20.5.0/24 overlaps the subnet of network \"big\""
    );
    assert!(n.status.subnet.is_empty());

    h.client.delete::<Network>("big", None).await.unwrap();
    let n = h
        .until("small allocated once big is gone", async || {
            let n = h.client.get::<Network>("small").await.ok()?;
            (!n.status.subnet.is_empty()).then_some(n)
        })
        .await;
    assert_eq!(n.status.subnet, "10.20.5.0/24");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_released_and_reused() {
    let h = server().await;
    h.ipam("ipam");
    // A /30 has one address besides the gateway.
    h.network("tiny", Some("10.9.0.0/30")).await;
    h.task("web.1.1", &["tiny"]).await;
    h.until("first task pending", async || {
        let t = h.client.get::<Task>("web.1.1").await.ok()?;
        (t.status.state == TaskState::Pending).then_some(())
    })
    .await;
    h.task("web.2.1", &["tiny"]).await;
    let t = h
        .until("second task told why it waits", async || {
            let t = h.client.get::<Task>("web.2.1").await.ok()?;
            (!t.status.message.is_empty()).then_some(t)
        })
        .await;
    assert_eq!(t.status.state, TaskState::New);
    assert_eq!(
        t.status.message,
        "no address left on network \"tiny\" (10.9.0.0/30)"
    );

    h.client.delete::<Task>("web.1.1", None).await.unwrap();
    let t = h
        .until("second task gets the freed address", async || {
            let t = h.client.get::<Task>("web.2.1").await.ok()?;
            (t.status.state == TaskState::Pending).then_some(t)
        })
        .await;
    assert_eq!(t.spec.networks[0].addresses, vec!["10.9.0.2/30"]);
    let n = h.client.get::<Network>("tiny").await.unwrap();
    assert_eq!(
        n.status.addresses.into_iter().collect::<Vec<_>>(),
        vec![("10.9.0.2".to_string(), "task/web.2.1".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_ports_are_unique_across_services() {
    let h = server().await;
    h.ipam("ipam-a");
    h.ipam("ipam-b");
    h.service("s1", &[], vec![port(80, None)]).await;
    h.service("s2", &[], vec![port(80, None)]).await;
    h.service("s3", &[], vec![port(80, Some(8080))]).await;
    h.service("s4", &[], vec![port(80, Some(8080))]).await;
    let services: Vec<Service> = h
        .until("every service decided", async || {
            let ss: Vec<Service> = h.all().await;
            ss.iter()
                .all(|s| s.status.conditions.iter().any(|c| c.type_ == "Allocated"))
                .then_some(ss)
        })
        .await;
    let by: HashMap<&str, &Service> = services
        .iter()
        .map(|s| (s.metadata.name.as_str(), s))
        .collect();
    let dynamic: HashSet<Option<u16>> = ["s1", "s2"]
        .iter()
        .map(|s| by[s].status.ports[0].published_port)
        .collect();
    assert_eq!(dynamic, HashSet::from([Some(30000), Some(30001)]));
    let winners: Vec<&str> = ["s3", "s4"]
        .into_iter()
        .filter(|s| by[s].status.ports.first().and_then(|p| p.published_port) == Some(8080))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one service publishes 8080");
    let loser = if winners[0] == "s3" { "s4" } else { "s3" };
    let c = &by[loser].status.conditions[0];
    assert_eq!(c.status, ConditionStatus::False);
    assert_eq!(
        c.message,
        format!("port 8080/tcp is already published by {}", winners[0])
    );
}
