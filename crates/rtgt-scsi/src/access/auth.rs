//! Authentication settings of node ACLs, portal groups and discovery.
//!
//! The core only stores them: which method runs them is the fabric's
//! business (iSCSI runs CHAP in its login phase). Secrets are kept in a
//! type that never prints its bytes, so a `{:?}` in a log line or an error
//! cannot leak one.

use std::fmt;

/// A shared secret. `Debug` and `Display` print `<secret>`; the bytes are
/// wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The secret's bytes, for the authentication method that uses them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: the allocator may have copied it elsewhere before,
        // but the last copy does not linger in freed memory.
        for b in self.0.iter_mut() {
            wipe(b);
        }
    }
}

/// Overwrite one byte so that the compiler cannot drop the store as dead.
fn wipe(b: &mut u8) {
    *std::hint::black_box(b) = 0;
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A user name and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub user: String,
    pub secret: Secret,
}

/// CHAP settings: the credential the initiator must prove, and, for mutual
/// CHAP, the one the target proves back to the initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapAuth {
    pub initiator: Credential,
    pub mutual: Option<Credential>,
}

/// Why CHAP settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the CHAP user name is empty")]
    EmptyUser,
    #[error("the CHAP secret of user {0:?} is empty")]
    EmptySecret(String),
    #[error("the mutual CHAP secret must differ from the initiator's CHAP secret")]
    MutualSecretReused,
}

impl ChapAuth {
    /// Check what RFC 7143 asks of CHAP secrets (a mutual secret must not
    /// be the one-way secret: an attacker could otherwise get the target to
    /// answer its own challenge).
    pub fn validate(&self) -> Result<(), AuthError> {
        for c in std::iter::once(&self.initiator).chain(self.mutual.as_ref()) {
            if c.user.is_empty() {
                return Err(AuthError::EmptyUser);
            }
            if c.secret.is_empty() {
                return Err(AuthError::EmptySecret(c.user.clone()));
            }
        }
        if let Some(m) = &self.mutual {
            if m.secret == self.initiator.secret {
                return Err(AuthError::MutualSecretReused);
            }
        }
        Ok(())
    }
}

/// Where a secret authenticates the target (a mutual credential) and,
/// the same bytes, an initiator: the places of [`find_secret_in_both_roles`]'s
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleClash<P> {
    /// The settings whose initiator secret it is.
    pub initiator: P,
    /// The settings whose mutual (target) secret it is.
    pub target: P,
}

/// RFC 7143 9.2.1 across every CHAP setting of a daemon: a secret that
/// authenticates initiators must not authenticate the target, anywhere.
/// Otherwise an attacker who can make the target answer a challenge with
/// the mutual secret (any mutual login) gets the answer to a challenge the
/// target sent on another connection, and logs in as the other initiator
/// without knowing its secret. Returns the first clash, naming the places
/// `P` the caller attached to each setting.
pub fn find_secret_in_both_roles<'a, P: Copy + 'a>(
    settings: impl IntoIterator<Item = (P, &'a ChapAuth)>,
) -> Option<RoleClash<P>> {
    let settings: Vec<(P, &ChapAuth)> = settings.into_iter().collect();
    let initiator_secrets: std::collections::HashMap<&[u8], P> = settings
        .iter()
        .rev() // the first place wins
        .map(|(p, a)| (a.initiator.secret.expose(), *p))
        .collect();
    settings.iter().find_map(|(p, a)| {
        let m = a.mutual.as_ref()?;
        initiator_secrets
            .get(m.secret.expose())
            .map(|&initiator| RoleClash {
                initiator,
                target: *p,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(user: &str, secret: &str) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::new(secret.as_bytes()),
        }
    }

    #[test]
    fn secrets_never_print() {
        let a = ChapAuth {
            initiator: cred("alice", "topsecret123"),
            mutual: Some(cred("tgt", "othersecret456")),
        };
        let dbg = format!("{a:?} {}", a.initiator.secret);
        assert!(
            !dbg.contains("topsecret123") && !dbg.contains("othersecret456"),
            "{dbg}"
        );
        assert!(dbg.contains("alice"));
    }

    #[test]
    fn validation() {
        let mut a = ChapAuth {
            initiator: cred("alice", "topsecret123"),
            mutual: None,
        };
        assert_eq!(a.validate(), Ok(()));
        a.mutual = Some(cred("tgt", "topsecret123"));
        assert_eq!(a.validate(), Err(AuthError::MutualSecretReused));
        a.mutual = Some(cred("", "x"));
        assert_eq!(a.validate(), Err(AuthError::EmptyUser));
        a.mutual = Some(cred("t", ""));
        assert_eq!(a.validate(), Err(AuthError::EmptySecret("t".into())));
    }

    #[test]
    fn a_secret_in_both_roles_anywhere_is_found() {
        let one_way = |u: &str, s: &str| ChapAuth {
            initiator: cred(u, s),
            mutual: None,
        };
        let mutual = |u: &str, s: &str, m: &str| ChapAuth {
            initiator: cred(u, s),
            mutual: Some(cred("target", m)),
        };
        let ow2 = one_way("ow2", "shared-secret-S");
        let mu2 = mutual("mu2", "mu2-own-secret", "shared-secret-S");
        let other = mutual("x", "x-secret-12345", "target-secret-1");
        let fine = [("ow2", &ow2), ("other", &other)];
        assert_eq!(find_secret_in_both_roles(fine), None);
        let clash = [("other", &other), ("ow2", &ow2), ("mu2", &mu2)];
        assert_eq!(
            find_secret_in_both_roles(clash),
            Some(RoleClash {
                initiator: "ow2",
                target: "mu2"
            })
        );
        // Within one setting too (what validate() also refuses).
        let same = mutual("y", "same-secret-12", "same-secret-12");
        assert_eq!(
            find_secret_in_both_roles([("y", &same)]),
            Some(RoleClash {
                initiator: "y",
                target: "y"
            })
        );
        // The same mutual secret for many initiators, and the same
        // initiator secret for many, are no clash.
        let a = mutual("a", "a-secret-12345", "target-secret-1");
        let b = mutual("b", "a-secret-12345", "target-secret-1");
        assert_eq!(find_secret_in_both_roles([("a", &a), ("b", &b)]), None);
    }
}
