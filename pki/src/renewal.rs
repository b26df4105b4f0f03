//! When a certificate is renewed: at a random point between 50 % and 80 % of its life, as
//! Swarm does, so a fleet whose certificates were issued together does not renew together.
//! Every holder uses this: agents, controllers, and the apiserver for its serving certificate.

use std::time::{Duration, SystemTime};

use crate::ca::CaError;

/// A certificate's validity, as (not before, not after).
pub fn validity(cert_pem: &str) -> Result<(SystemTime, SystemTime), CaError> {
    let der = crate::ca::pem_to_der(cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| CaError::Pem(e.to_string()))?;
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    Ok((
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    ))
}

/// When to renew: a point between 50 % and 80 % of the certificate's life, `fraction` in
/// [0, 1) choosing where.
pub fn renewal_time(cert_pem: &str, fraction: f64) -> Result<SystemTime, CaError> {
    let (start, end) = validity(cert_pem)?;
    let life = end.duration_since(start).unwrap_or_default();
    let share = 0.5 + 0.3 * fraction.clamp(0.0, 1.0);
    Ok(start + life.mul_f64(share))
}

/// How long from now until a random renewal time of `cert_pem` (zero when it has passed).
pub fn until_renewal(cert_pem: &str) -> Result<Duration, CaError> {
    let mut bytes = [0u8; 4];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Random)?;
    let fraction = f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0);
    let at = renewal_time(cert_pem, fraction)?;
    Ok(at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterCa, Identity, Role};

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_life() {
        let ca = ClusterCa::generate("r").unwrap();
        let life = Duration::from_secs(1000);
        let (pem, _) = ca
            .issue(&Identity::new("n", Role::Worker, "r"), &[], life)
            .unwrap();
        let (start, end) = validity(&pem).unwrap();
        let span = end.duration_since(start).unwrap();
        // The backdating for clock skew is a small share of a short life.
        assert!(span >= life && span <= life + life / 10, "{span:?}");
        let earliest = renewal_time(&pem, 0.0).unwrap();
        let latest = renewal_time(&pem, 1.0).unwrap();
        assert_eq!(earliest, start + span / 2);
        assert_eq!(latest, start + span.mul_f64(0.8));
        let wait = until_renewal(&pem).unwrap();
        assert!(wait <= span.mul_f64(0.8), "{wait:?}");
        assert!(until_renewal("not a certificate").is_err());
    }
}
