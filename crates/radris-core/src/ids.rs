//! Identifier newtypes. Each is validated on construction so that code past the edge never
//! handles an unchecked string.

use std::fmt;

/// Why a string was refused as an identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    #[error("invalid UID {value:?}: {reason}")]
    Uid { value: String, reason: &'static str },
    #[error("invalid AE title {value:?}: {reason}")]
    AeTitle { value: String, reason: &'static str },
    #[error("invalid tenant name {value:?}: {reason}")]
    Tenant { value: String, reason: &'static str },
}

/// A DICOM UID (PS3.5 §9.1): 1..=64 characters, digits and dots, no empty components.
/// Components with a leading zero break PS3.5 but are common in archives of real studies;
/// they are accepted so that such studies stay storable and retrievable.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

impl Uid {
    /// Parse a UID, trimming the trailing NUL/space padding DICOM allows.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let value = raw.trim_end_matches(['\0', ' ']).trim_start();
        let err = |reason| IdError::Uid {
            value: value.chars().take(80).collect(),
            reason,
        };
        if value.is_empty() {
            return Err(err("empty"));
        }
        if value.len() > 64 {
            return Err(err("longer than 64 characters"));
        }
        for comp in value.split('.') {
            if comp.is_empty() {
                return Err(err("empty component"));
            }
            if !comp.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("only digits and dots are allowed"));
            }
        }
        Ok(Uid(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({})", self.0)
    }
}

/// A DICOM Application Entity title (PS3.5 VR AE): 1..=16 characters of the default
/// repertoire without backslash or control characters; leading/trailing spaces are not
/// significant.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AeTitle(String);

impl AeTitle {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let value = raw.trim_matches([' ', '\0']);
        let err = |reason| IdError::AeTitle {
            value: value.chars().take(32).collect(),
            reason,
        };
        if value.is_empty() {
            return Err(err("empty"));
        }
        if value.len() > 16 {
            return Err(err("longer than 16 characters"));
        }
        if !value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
        {
            return Err(err("only printable ASCII without backslash is allowed"));
        }
        Ok(AeTitle(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AeTitle({})", self.0)
    }
}

/// The name of a tenant (a hospital, a department): lowercase ASCII letters, digits, `-` and
/// `_`, 1..=63 characters, so that it is safe as a path component and a SQL value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// The tenant that `--open-ae` and the demo use.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let err = |reason| IdError::Tenant {
            value: raw.chars().take(80).collect(),
            reason,
        };
        if raw.is_empty() || raw.len() > 63 {
            return Err(err("must be 1 to 63 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(err(
                "only lowercase letters, digits, '-' and '_' are allowed",
            ));
        }
        Ok(TenantId(raw.to_owned()))
    }

    pub fn default_tenant() -> Self {
        TenantId(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_rules() {
        assert_eq!(Uid::parse("1.2.3\0").unwrap().as_str(), "1.2.3");
        assert!(Uid::parse("1.2.0").is_ok());
        assert!(Uid::parse("1.02").is_ok());
        assert!(Uid::parse("1..2").is_err());
        assert!(Uid::parse("").is_err());
        assert!(Uid::parse(&"1".repeat(65)).is_err());
        assert!(Uid::parse("1.2.abc").is_err());
    }

    #[test]
    fn ae_rules() {
        assert_eq!(AeTitle::parse(" RADRIS ").unwrap().as_str(), "RADRIS");
        assert!(AeTitle::parse("A\\B").is_err());
        assert!(AeTitle::parse("ABCDEFGHIJKLMNOPQ").is_err());
        assert!(AeTitle::parse("   ").is_err());
    }

    #[test]
    fn tenant_rules() {
        assert!(TenantId::parse("st-marys_2").is_ok());
        assert!(TenantId::parse("../etc").is_err());
        assert!(TenantId::parse("Upper").is_err());
    }
}

/// A person name (DICOM PN, or a name typed to match one) as the index, the RIS and the
/// authorisation rules compare it: spaces and NULs trimmed, trailing empty components and
/// component groups dropped, upper-cased. PS3.5 6.2 lets trailing empty components and their
/// `^`/`=` delimiters be left out, so `DOE^JOHN^^^` (how many modalities pad a name) and
/// `Doe^John` are the same name.
pub fn person_name_key(name: &str) -> String {
    name.trim_start_matches([' ', '\0'])
        .trim_end_matches([' ', '\0', '^', '='])
        .to_uppercase()
}

#[cfg(test)]
mod person_name_tests {
    use super::person_name_key;

    #[test]
    fn trailing_empty_components_do_not_count() {
        assert_eq!(person_name_key("Doe^John"), "DOE^JOHN");
        assert_eq!(person_name_key(" DOE^JOHN^^^ "), "DOE^JOHN");
        assert_eq!(person_name_key("SMITH^JANE^^="), "SMITH^JANE");
        assert_eq!(person_name_key("Müller^Jürgen\0"), "MÜLLER^JÜRGEN");
        // inner empty components are kept: they say which component a value is
        assert_eq!(person_name_key("^^Smith"), "^^SMITH");
        assert_eq!(person_name_key("Doe^^Jr"), "DOE^^JR");
        assert_eq!(person_name_key("^^^"), "");
    }
}
