//! Who is calling, and what they may do.

use radris_core::TenantId;

/// One permission an API token or session can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Query and retrieve (QIDO, WADO, REST reads).
    Read,
    /// Store (STOW, uploads).
    Write,
    /// Delete studies, series and instances.
    Delete,
    /// Administration: tokens, statistics of the whole tenant, audit search.
    Admin,
}

impl Scope {
    const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Delete, Scope::Admin];

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Delete => 4,
            Scope::Admin => 8,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Delete => "delete",
            Scope::Admin => "admin",
        }
    }
}

/// A set of [`Scope`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Self {
        Scopes(Scope::ALL.iter().fold(0, |a, s| a | s.bit()))
    }

    pub fn of(scopes: &[Scope]) -> Self {
        Scopes(scopes.iter().fold(0, |a, s| a | s.bit()))
    }

    /// Whether every scope of `other` is also in `self`.
    pub fn covers(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Parse a comma separated list such as `read,write`.
    pub fn parse(text: &str) -> Result<Self, crate::AuthError> {
        let mut bits = 0;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let scope = Scope::ALL
                .iter()
                .find(|s| s.as_str() == word)
                .ok_or_else(|| crate::AuthError::Invalid(format!("unknown scope {word:?}")))?;
            bits |= scope.bit();
        }
        if bits == 0 {
            return Err(crate::AuthError::Invalid("no scope given".into()));
        }
        Ok(Scopes(bits))
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Scope::ALL
            .iter()
            .filter(|s| self.contains(**s))
            .map(|s| s.as_str())
            .collect();
        f.write_str(&names.join(","))
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    /// For the audit log: `token:<id>` or `anonymous`.
    pub actor: String,
    /// The user the credential belongs to.
    pub user: String,
    pub scopes: Scopes,
}

impl Principal {
    pub fn can(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        let s = Scopes::parse("read, write").unwrap();
        assert!(s.contains(Scope::Read) && s.contains(Scope::Write));
        assert!(!s.contains(Scope::Delete));
        assert_eq!(s.to_string(), "read,write");
        assert!(Scopes::parse("read,root").is_err());
        assert!(Scopes::parse("").is_err());
        assert_eq!(Scopes::all().to_string(), "read,write,delete,admin");
    }
}
