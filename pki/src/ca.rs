//! The cluster CA: made once by `swarm init`, it signs every component's certificate.
//!
//! Keys are ECDSA P-256 (rcgen's default). A joining machine makes its own key and sends only
//! a CSR; the CA ignores everything the CSR asks for except the public key and writes the
//! subject itself from what the manager decided (node id, role, cluster), so a machine cannot
//! give itself a role.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::identity::Identity;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate operation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("not a PEM certificate: {0}")]
    Pem(String),
    #[error("the system's random number generator failed")]
    Random,
}

/// The CA certificate and its private key.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
    cluster_id: String,
}

/// SHA-256 of a DER certificate: what join tokens carry.
fn sha256(der: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub(crate) fn pem_to_der(pem: &str) -> Result<Vec<u8>, CaError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CaError::Pem(e.to_string()))?;
    Ok(p.contents)
}

/// The digest of a PEM CA certificate, to compare with a join token's.
pub fn ca_digest_of_pem(pem: &str) -> Result<[u8; 32], CaError> {
    Ok(sha256(&pem_to_der(pem)?))
}

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = OffsetDateTime::now_utc();
    // Slack for clocks that disagree a little: an hour, or a tenth of a short life (a
    // certificate made to last seconds, in tests, would otherwise be mostly in the past and
    // due for renewal at once).
    let valid_secs = valid_for.as_secs().min(i64::MAX as u64 / 2) as i64;
    params.not_before = now - time::Duration::seconds((valid_secs / 10).min(3600));
    params.not_after = now + time::Duration::seconds(valid_secs);
}

fn subject(identity: &Identity) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.id.as_str());
    dn.push(DnType::OrganizationalUnitName, identity.role.as_str());
    dn.push(DnType::OrganizationName, identity.cluster.as_str());
    dn
}

impl ClusterCa {
    /// A new CA for a new cluster, valid 20 years (Swarm's default).
    pub fn generate(cluster_id: &str) -> Result<Self, CaError> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "swarm-ca");
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        validity(&mut params, Duration::from_secs(20 * 365 * 86_400));
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
            cluster_id: cluster_id.to_string(),
        })
    }

    /// Loads a CA saved with `cert_pem` and `key_pem`.
    pub fn from_pem(cert_pem: &str, key_pem: &str, cluster_id: &str) -> Result<Self, CaError> {
        Ok(ClusterCa {
            cert_pem: cert_pem.to_string(),
            cert_der: pem_to_der(cert_pem)?,
            key: KeyPair::from_pem(key_pem)?,
            cluster_id: cluster_id.to_string(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM; to be kept on manager disk with mode 0600.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// SHA-256 of the CA certificate, as carried in join tokens.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.cert_der)
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, CaError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?)
    }

    fn leaf_params(
        &self,
        identity: &Identity,
        sans: &[String],
        valid_for: Duration,
    ) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(identity);
        params.subject_alt_names = sans
            .iter()
            .filter_map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Some(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().ok().map(SanType::DnsName),
            })
            .collect();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, valid_for);
        params
    }

    /// Signs a CSR's public key for `identity`; everything else the CSR asks for is ignored.
    /// `sans` (IP addresses or DNS names) go into the certificate for servers.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        sans: &[String],
        valid_for: Duration,
    ) -> Result<String, CaError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        csr.params = self.leaf_params(identity, sans, valid_for);
        Ok(csr.signed_by(&self.issuer()?)?.pem())
    }

    /// Makes a key and a certificate for `identity` here (the manager's own, the admin's).
    /// Returns (certificate PEM, private key PEM).
    pub fn issue(
        &self,
        identity: &Identity,
        sans: &[String],
        valid_for: Duration,
    ) -> Result<(String, String), CaError> {
        let key = KeyPair::generate()?;
        let cert = self
            .leaf_params(identity, sans, valid_for)
            .signed_by(&key, &self.issuer()?)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A joining machine's key: it never leaves the machine; only its CSR does.
pub struct NodeKey {
    key: KeyPair,
}

impl NodeKey {
    pub fn generate() -> Result<Self, CaError> {
        Ok(NodeKey {
            key: KeyPair::generate()?,
        })
    }

    pub fn from_pem(pem: &str) -> Result<Self, CaError> {
        Ok(NodeKey {
            key: KeyPair::from_pem(pem)?,
        })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A CSR for this key. Its subject is a hint only: the CA writes the real one.
    pub fn csr_pem(&self, hostname: &str) -> Result<String, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, hostname);
        params.distinguished_name = dn;
        Ok(params.serialize_request(&self.key)?.pem()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    use crate::token::JoinToken;

    #[test]
    fn a_csr_signed_by_the_ca_carries_the_identity_the_ca_chose() {
        let ca = ClusterCa::generate("cluster-1").unwrap();
        let node = NodeKey::generate().unwrap();
        let csr = node.csr_pem("worker-host").unwrap();
        let id = Identity::new("node-abc", Role::Worker, "cluster-1");
        let pem = ca
            .sign_csr(
                &csr,
                &id,
                &["10.0.0.5".into()],
                crate::DEFAULT_CERT_VALIDITY,
            )
            .unwrap();
        let der = pem_to_der(&pem).unwrap();
        assert_eq!(Identity::from_cert_der(&der).unwrap(), id);

        // The certificate chains to the CA: its issuer is the CA's subject and the
        // signature verifies with the CA's public key.
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.cert_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 90);
    }

    #[test]
    fn another_cas_certificate_does_not_verify() {
        let ca = ClusterCa::generate("a").unwrap();
        let other = ClusterCa::generate("b").unwrap();
        let (pem, _) = other
            .issue(
                &Identity::new("x", Role::Admin, "b"),
                &[],
                Duration::from_secs(3600),
            )
            .unwrap();
        let der = pem_to_der(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.cert_der).unwrap();
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_err());
        assert_ne!(ca.digest(), other.digest());
    }

    #[test]
    fn a_saved_ca_reloads_and_keeps_its_digest() {
        let ca = ClusterCa::generate("c").unwrap();
        let again = ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem(), "c").unwrap();
        assert_eq!(again.digest(), ca.digest());
        assert_eq!(ca_digest_of_pem(ca.cert_pem()).unwrap(), ca.digest());
        let token = JoinToken::generate(ca.digest()).unwrap();
        let parsed: JoinToken = token.to_string().parse().unwrap();
        assert_eq!(parsed.ca_digest, again.digest());
    }

    #[test]
    fn garbage_csrs_and_certificates_are_errors_not_panics() {
        let ca = ClusterCa::generate("d").unwrap();
        let id = Identity::new("n", Role::Worker, "d");
        assert!(
            ca.sign_csr("not a csr", &id, &[], Duration::from_secs(60))
                .is_err()
        );
        assert!(Identity::from_cert_der(b"\x30\x03garbage").is_err());
        assert!(ca_digest_of_pem("-----BEGIN CERTIFICATE-----\n!!\n").is_err());
    }
}
