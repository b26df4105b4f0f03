//! The ipam controller against a real apiserver, including two ipam processes racing.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use swarm_api::meta::ConditionStatus;
use swarm_api::{
    EndpointMode, Network, NetworkAttachmentConfig, NetworkSpec, PortConfig, PublishMode, Service,
    ServiceSpec, Task, TaskSpec, TaskState,
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

    /// The service's VIPs, once it has `n` of them.
    async fn vips(&self, name: &str, n: usize) -> Vec<(String, String)> {
        self.until(&format!("{n} VIPs of {name}"), async || {
            let s = self.client.get::<Service>(name).await.ok()?;
            let v: Vec<(String, String)> = s
                .status
                .virtual_ips
                .iter()
                .map(|v| (v.network.clone(), v.addr.clone()))
                .collect();
            (v.len() == n && s.status.conditions.iter().any(|c| c.type_ == "Allocated"))
                .then_some(v)
        })
        .await
    }

    /// The ledger of network `name`, once `pred` holds on it.
    async fn ledger_when(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&HashMap<String, String>) -> bool,
    ) -> HashMap<String, String> {
        self.until(what, async || {
            let n = self.client.get::<Network>(name).await.ok()?;
            let l: HashMap<String, String> = n.status.addresses.into_iter().collect();
            pred(&l).then_some(l)
        })
        .await
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
    let networks: Vec<Network> = h
        .until("every subnet, ingress's too", async || {
            let ns: Vec<Network> = h.all().await;
            (ns.len() == 8 && ns.iter().all(|n| !n.status.subnet.is_empty())).then_some(ns)
        })
        .await;

    // Subnets: all different; the user's honoured.
    let subnets: HashSet<&str> = networks.iter().map(|n| n.status.subnet.as_str()).collect();
    assert_eq!(subnets.len(), 8, "{subnets:?}");
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
            // Decided: allocated or refused, no longer waiting for the ingress subnet.
            ss.iter()
                .all(|s| {
                    s.status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Allocated" && !c.message.contains("to get a subnet"))
                })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_publishing_ingress_ports_get_a_vip_on_the_ingress_network() {
    let h = server().await;
    h.ipam("ipam");
    // ipam creates Swarm's ingress network on 10.0.0.0/24; other networks start after it.
    let ingress = h
        .until("the ingress network", async || {
            let n = h.client.get::<Network>("ingress").await.ok()?;
            (!n.status.subnet.is_empty()).then_some(n)
        })
        .await;
    assert!(ingress.spec.ingress);
    assert_eq!(ingress.spec.ipam.subnet.as_deref(), Some("10.0.0.0/24"));
    assert_eq!(ingress.status.gateway, "10.0.0.1");
    h.network("front", None).await;

    // Publishes through the mesh: a VIP on its own network and one on ingress.
    h.service("web", &["front"], vec![port(80, Some(8080))])
        .await;
    // Host-mode ports only, or none: no ingress VIP.
    let mut host = port(81, Some(8081));
    host.publish_mode = PublishMode::Host;
    h.service("host", &["front"], vec![host.clone()]).await;
    h.service("quiet", &["front"], vec![]).await;
    // dnsrr with host-mode ports: no VIP anywhere.
    let mut s = Service::new("rr", ServiceSpec::default());
    s.spec.task_template.container.image = "swarm-examples/hello:1".into();
    s.spec.task_template.networks = vec![NetworkAttachmentConfig {
        target: "front".into(),
        ..Default::default()
    }];
    s.spec.endpoint.mode = EndpointMode::Dnsrr;
    s.spec.endpoint.ports = vec![host.clone()];
    s.spec.endpoint.ports[0].published_port = Some(8082);
    h.client.create(&s).await.unwrap();
    // A dnsrr service may not publish through the mesh at all: the API refuses it.
    let mut bad = s.clone();
    bad.metadata.name = "rr-mesh".into();
    bad.spec.endpoint.ports = vec![port(80, Some(8083))];
    let err = h.client.create(&bad).await.unwrap_err();
    assert!(err.to_string().contains("dnsrr"), "{err}");

    let web = h.vips("web", 2).await;
    assert_eq!(web[0].0, "front");
    assert!(web[0].1.starts_with("10.0.1."), "{web:?}");
    assert_eq!(web[1], ("ingress".to_string(), "10.0.0.2/24".to_string()));
    assert_eq!(h.vips("host", 1).await[0].0, "front");
    assert_eq!(h.vips("quiet", 1).await[0].0, "front");
    assert!(h.vips("rr", 0).await.is_empty());
    h.ledger_when("ingress", "web's ingress VIP in the ledger", |l| {
        l.len() == 1 && l.get("10.0.0.2").map(String::as_str) == Some("service/web")
    })
    .await;

    // A second publisher; then web stops publishing through the mesh, and the second goes.
    h.service("api", &[], vec![port(80, Some(9090))]).await;
    assert_eq!(
        h.vips("api", 1).await[0],
        ("ingress".to_string(), "10.0.0.3/24".to_string())
    );
    let mut w = h.client.get::<Service>("web").await.unwrap();
    w.spec.endpoint.ports = vec![host];
    h.client.replace(&w).await.unwrap();
    assert_eq!(h.vips("web", 1).await[0].0, "front");
    h.client.delete::<Service>("api", None).await.unwrap();
    let l = h
        .ledger_when("ingress", "both ingress VIPs released", |l| l.is_empty())
        .await;
    assert!(l.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_network_the_user_made_is_kept() {
    let h = server().await;
    // Made before ipam starts, on a subnet of the user's choosing.
    let mut mine = Network::new("ingress", NetworkSpec::default());
    mine.spec.ingress = true;
    mine.spec.ipam.subnet = Some("10.99.0.0/24".into());
    h.client.create(&mine).await.unwrap();
    h.ipam("ipam");
    h.service("web", &[], vec![port(80, Some(8080))]).await;
    assert_eq!(
        h.vips("web", 1).await[0],
        ("ingress".to_string(), "10.99.0.2/24".to_string())
    );
    let n = h.client.get::<Network>("ingress").await.unwrap();
    assert_eq!(n.spec, mine.spec, "left as the user made it");
    assert_eq!(n.status.subnet, "10.99.0.0/24");
    let nets: Vec<Network> = h.all().await;
    assert_eq!(nets.len(), 1, "no second ingress network");
}
