//! Password rules (OWASP ASVS 5.0 level 2, V6.2) and Argon2id hashing.
//!
//! * at least 12 characters, at most 128 (long passphrases welcome; no composition rules, no
//!   forced rotation);
//! * refused when it is a commonly used or breached password, or contains the user name;
//! * hashed with Argon2id (19 MiB, 2 iterations, 1 lane: the OWASP minimum) in PHC format.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::AuthError;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;

/// Passwords seen at the top of every public breach corpus, and their obvious variants. The
/// check is on the lower-cased password with digits and symbols at the ends stripped, so
/// `Password123!` and `qwerty2024` are refused too.
const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "qwerty",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "abc123",
    "iloveyou",
    "admin",
    "administrator",
    "welcome",
    "letmein",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "master",
    "shadow",
    "trustno1",
    "superman",
    "batman",
    "starwars",
    "whatever",
    "changeme",
    "default",
    "secret",
    "login",
    "hello",
    "freedom",
    "michael",
    "jennifer",
    "hunter",
    "charlie",
    "qazwsx",
    "1q2w3e4r",
    "1qaz2wsx",
    "zaq12wsx",
    "azerty",
    "000000",
    "111111",
    "121212",
    "654321",
    "666666",
    "696969",
    "987654321",
    "password1",
    "radris",
    "pacs",
    "radiology",
    "hospital",
    "doctor",
    "nurse",
    "orthanc",
    "dicom",
    "correcthorsebatterystaple",
    "passwordpassword",
    "qwertyqwerty",
    "letmeinletmein",
];

/// Check a new password against the rules. The message says which rule, never the password.
pub fn check_policy(user: &str, password: &str) -> Result<(), AuthError> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(AuthError::Invalid(format!(
            "the password must have at least {MIN_LEN} characters"
        )));
    }
    if chars > MAX_LEN {
        return Err(AuthError::Invalid(format!(
            "the password must have at most {MAX_LEN} characters"
        )));
    }
    let lower = password.to_lowercase();
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let squeezed: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
    if COMMON
        .iter()
        .any(|c| *c == core || *c == squeezed || *c == lower)
        || lower
            .chars()
            .all(|c| c == lower.chars().next().unwrap_or(' '))
    {
        return Err(AuthError::Invalid(
            "the password is too common (it appears in breach lists)".into(),
        ));
    }
    let u = user.trim().to_lowercase();
    if u.len() >= 3 && lower.contains(&u) {
        return Err(AuthError::Invalid(
            "the password must not contain the user name".into(),
        ));
    }
    Ok(())
}

fn hasher() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| AuthError::Invalid(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Argon2id hash in PHC string format.
pub fn hash(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Random(e.to_string()))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Invalid(format!("hashing: {e}")))
}

/// Whether `password` matches a stored PHC hash (constant-time comparison inside argon2).
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    hasher()
        .map(|h| h.verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// Characters of generated passwords: letters and digits without the look-alikes
/// (0/O/o, 1/l/I), so a password read off a screen is typed right; 56 symbols, about 5.8
/// bits each.
const GENERATED_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A random password of `len` characters (at least [`MIN_LEN`]) that passes
/// [`check_policy`] for `user`: for accounts the server creates itself (the demo user).
pub fn generate(user: &str, len: usize) -> Result<String, AuthError> {
    let len = len.clamp(MIN_LEN, MAX_LEN);
    // the largest multiple of the alphabet size below 256: bytes above it are drawn again,
    // so every character is equally likely
    let n = GENERATED_ALPHABET.len();
    let limit = 256 - 256 % n;
    loop {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let mut raw = [0u8; 64];
            getrandom::fill(&mut raw).map_err(|e| AuthError::Random(e.to_string()))?;
            for b in raw {
                let b = usize::from(b);
                if b < limit && out.len() < len {
                    out.push(char::from(GENERATED_ALPHABET[b % n]));
                }
            }
        }
        if check_policy(user, &out).is_ok() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_pass_the_rules_and_differ() {
        let a = generate("demo", 20).unwrap();
        let b = generate("demo", 20).unwrap();
        assert_eq!(a.chars().count(), 20);
        assert!(a.bytes().all(|c| GENERATED_ALPHABET.contains(&c)));
        assert!(check_policy("demo", &a).is_ok());
        assert_ne!(a, b);
        assert_eq!(generate("demo", 3).unwrap().len(), MIN_LEN);
    }

    #[test]
    fn policy() {
        assert!(check_policy("alice", "short").is_err());
        assert!(check_policy("alice", &"x".repeat(129)).is_err());
        assert!(check_policy("alice", "Password123!").is_err());
        assert!(check_policy("alice", "qwertyqwerty").is_err());
        assert!(check_policy("alice", "aaaaaaaaaaaaaa").is_err());
        assert!(check_policy("alice", "alice-is-the-best-user").is_err());
        assert!(check_policy("alice", "correct horse battery staple").is_err());
        assert!(check_policy("alice", "moonlit ferry over quiet harbour").is_ok());
        assert!(check_policy("alice", "Tr0ub4dor&3-moonlit-ferry").is_ok());
    }

    #[test]
    fn hash_and_verify() {
        let h = hash("moonlit ferry over quiet harbour").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("moonlit ferry over quiet harbour", &h));
        assert!(!verify("moonlit ferry over quiet harbours", &h));
        assert!(!verify("x", "not a hash"));
        assert_ne!(
            h,
            hash("moonlit ferry over quiet harbour").unwrap(),
            "salted"
        );
    }
}
