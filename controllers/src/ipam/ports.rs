//! Published ports: a port not given in the service's endpoint is picked from the dynamic
//! range 30000–32767 (ingress mode), and every published port — picked or given — is owned
//! cluster-wide through a claim marker, a `Lease` named `ipam-port-tcp-30000` held by
//! `Service/<name>/<uid>`, created (create-if-absent) in the transaction that writes the
//! service's `status.ports`. Two services can therefore never publish one port.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use swarm_api::{PortProtocol, Service};

/// Swarm's dynamic range.
pub const DYNAMIC: RangeInclusive<u16> = 30000..=32767;

const MARKER_PREFIX: &str = "ipam-port-";

fn proto(p: PortProtocol) -> &'static str {
    match p {
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
        PortProtocol::Sctp => "sctp",
    }
}

/// `ipam-port-tcp-30000`.
pub fn marker_name(p: PortProtocol, port: u16) -> String {
    format!("{MARKER_PREFIX}{}-{port}", proto(p))
}

pub fn parse_marker(name: &str) -> Option<(PortProtocol, u16)> {
    let rest = name.strip_prefix(MARKER_PREFIX)?;
    let (p, port) = rest.split_once('-')?;
    let p = match p {
        "tcp" => PortProtocol::Tcp,
        "udp" => PortProtocol::Udp,
        "sctp" => PortProtocol::Sctp,
        _ => return None,
    };
    Some((p, port.parse().ok()?))
}

/// Who holds a service's port markers.
pub fn holder(service: &Service) -> String {
    format!("Service/{}/{}", service.metadata.name, service.metadata.uid)
}

/// The service name and uid in a holder string.
pub fn holder_service(holder: &str) -> Option<(&str, &str)> {
    holder.strip_prefix("Service/")?.rsplit_once('/')
}

/// The lowest port of the dynamic range not in `taken`.
pub fn pick(p: PortProtocol, taken: &HashSet<(PortProtocol, u16)>) -> Option<u16> {
    DYNAMIC
        .into_iter()
        .find(|port| !taken.contains(&(p, *port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_lowest_free_per_protocol() {
        let mut taken = HashSet::new();
        assert_eq!(pick(PortProtocol::Tcp, &taken), Some(30000));
        taken.insert((PortProtocol::Tcp, 30000));
        assert_eq!(pick(PortProtocol::Tcp, &taken), Some(30001));
        assert_eq!(pick(PortProtocol::Udp, &taken), Some(30000));
        for p in DYNAMIC {
            taken.insert((PortProtocol::Tcp, p));
        }
        assert_eq!(pick(PortProtocol::Tcp, &taken), None);
    }

    #[test]
    fn markers_round_trip() {
        let m = marker_name(PortProtocol::Udp, 30123);
        assert_eq!(m, "ipam-port-udp-30123");
        assert_eq!(parse_marker(&m), Some((PortProtocol::Udp, 30123)));
        assert_eq!(holder_service("Service/web/u-1"), Some(("web", "u-1")));
    }
}
