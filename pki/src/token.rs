//! Join tokens: `SWMTKN-1-<CA digest>-<secret>`, as Swarm prints them.
//!
//! The digest is the SHA-256 of the CA certificate (DER) in base 36, 50 characters; the
//! secret is 25 random base-36 characters. A joining machine checks the manager's CA against
//! the digest before sending anything (so a man in the middle cannot pose as the manager);
//! the manager checks the secret, in constant time, before signing the machine's CSR. There is
//! one token per role (worker, manager); rotating one makes the old one useless.

use std::fmt;
use std::str::FromStr;

const PREFIX: &str = "SWMTKN";
const VERSION: &str = "1";
const DIGEST_CHARS: usize = 50;
const SECRET_CHARS: usize = 25;
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the CA certificate's DER.
    pub ca_digest: [u8; 32],
    secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "not a join token: expected SWMTKN-1-<digest>-<secret>; get one with `swarm join-token worker` on a manager"
    )]
    Malformed,
    #[error("the join token's version {0:?} is not supported (this swarm reads version 1)")]
    Version(String),
    #[error("the system random generator failed while making a join token")]
    Random,
}

impl JoinToken {
    /// A new token for the CA with digest `ca_digest`, with a fresh random secret.
    pub fn generate(ca_digest: [u8; 32]) -> Result<Self, TokenError> {
        let mut raw = [0u8; SECRET_CHARS];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| TokenError::Random)?;
        // 256 is a multiple of 4 but not of 36; rejection keeps every character equally likely.
        let mut secret = String::with_capacity(SECRET_CHARS);
        let mut pool = raw.to_vec();
        while secret.len() < SECRET_CHARS {
            for b in pool.drain(..) {
                if b < 252 && secret.len() < SECRET_CHARS {
                    secret.push(ALPHABET[usize::from(b % 36)] as char);
                }
            }
            if secret.len() < SECRET_CHARS {
                pool = vec![0u8; SECRET_CHARS];
                aws_lc_rs::rand::fill(&mut pool).map_err(|_| TokenError::Random)?;
            }
        }
        Ok(JoinToken { ca_digest, secret })
    }

    /// Whether `other` carries the same secret and CA digest; constant time in the secret.
    pub fn matches(&self, other: &JoinToken) -> bool {
        self.ca_digest == other.ca_digest
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                self.secret.as_bytes(),
                other.secret.as_bytes(),
            )
            .is_ok()
    }
}

/// The 32 bytes as a fixed-width base-36 number (big-endian), as Swarm writes the digest.
fn to_base36(bytes: &[u8; 32]) -> String {
    let mut n = bytes.to_vec();
    let mut digits = Vec::with_capacity(DIGEST_CHARS);
    for _ in 0..DIGEST_CHARS {
        let mut rem: u32 = 0;
        for byte in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

fn from_base36(s: &str) -> Option<[u8; 32]> {
    if s.len() != DIGEST_CHARS {
        return None;
    }
    let mut n = [0u8; 32];
    for c in s.bytes() {
        let d = ALPHABET.iter().position(|a| *a == c)? as u32;
        let mut carry = d;
        for byte in n.iter_mut().rev() {
            let cur = u32::from(*byte) * 36 + carry;
            *byte = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(n)
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}-{VERSION}-{}-{}",
            to_base36(&self.ca_digest),
            self.secret
        )
    }
}

/// Never shows the secret.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinToken({PREFIX}-{VERSION}-{}-…)",
            to_base36(&self.ca_digest)
        )
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [prefix, version, digest, secret] = parts.as_slice() else {
            return Err(TokenError::Malformed);
        };
        if *prefix != PREFIX {
            return Err(TokenError::Malformed);
        }
        if *version != VERSION {
            return Err(TokenError::Version(version.to_string()));
        }
        let ca_digest = from_base36(digest).ok_or(TokenError::Malformed)?;
        if secret.len() != SECRET_CHARS || !secret.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(TokenError::Malformed);
        }
        Ok(JoinToken {
            ca_digest,
            secret: secret.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_print_as_swarm_and_parse_back() {
        let digest = [0xab; 32];
        let t = JoinToken::generate(digest).unwrap();
        let s = t.to_string();
        assert!(s.starts_with("SWMTKN-1-"), "{s}");
        assert_eq!(s.len(), "SWMTKN-1-".len() + 50 + 1 + 25);
        let back: JoinToken = s.parse().unwrap();
        assert_eq!(back, t);
        assert!(back.matches(&t));
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn base36_round_trips_extremes() {
        for d in [[0u8; 32], [0xff; 32], {
            let mut x = [0u8; 32];
            x[31] = 35;
            x
        }] {
            assert_eq!(from_base36(&to_base36(&d)), Some(d));
        }
        assert_eq!(to_base36(&[0u8; 32]), "0".repeat(50));
    }

    #[test]
    fn different_secrets_or_cas_do_not_match() {
        let a = JoinToken::generate([1; 32]).unwrap();
        let b = JoinToken::generate([1; 32]).unwrap();
        assert!(!a.matches(&b), "two fresh secrets collided");
        let mut c = a.clone();
        c.ca_digest = [2; 32];
        assert!(!a.matches(&c));
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_hint() {
        let good = JoinToken::generate([3; 32]).unwrap().to_string();
        for bad in [
            "",
            "SWMTKN-1-abc-def",
            &good.replace("SWMTKN", "XXXXXX"),
            &good[..good.len() - 1],
            &format!("{good}-extra"),
            &good.replace(&good[9..11], "ZZ"),
        ] {
            let err = bad.parse::<JoinToken>().unwrap_err();
            assert_eq!(err, TokenError::Malformed, "{bad}");
        }
        let v2 = good.replacen("-1-", "-2-", 1);
        assert_eq!(
            v2.parse::<JoinToken>().unwrap_err(),
            TokenError::Version("2".into())
        );
        assert!(
            TokenError::Malformed
                .to_string()
                .contains("swarm join-token")
        );
    }

    #[test]
    fn a_digest_above_two_to_the_256_is_refused() {
        assert_eq!(from_base36(&"z".repeat(50)), None);
    }
}
