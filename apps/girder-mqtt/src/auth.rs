//! Who may connect: a password file in `mosquitto_passwd`'s format, so a Mosquitto user brings
//! theirs as it is.
//!
//! One `user:hash` per line; blank lines and lines starting with `#` are skipped. The hashes
//! `mosquitto_passwd` writes:
//!
//! * `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 (Mosquitto 2's default, 101
//!   iterations, a 12-byte salt, a 64-byte hash, both base64);
//! * `$6$<salt>$<hash>`: SHA-512 of the password followed by the salt (Mosquitto 1.x).
//!
//! A plain-text password (no `$`) is refused when the file is read, as Mosquitto refuses it:
//! storing one is a mistake, not a format.
//!
//! ```
//! use girder_mqtt::auth::PasswordFile;
//! // Written by `mosquitto_passwd -c -b pw.txt alice secret` (Mosquitto 2.0.11).
//! let file = PasswordFile::parse(
//!     "alice:$7$101$gOWun9J19AFh2Zip$UHTBiFcmRDnylJdNS4E28QINXZMl27PDR1xpv4RUxGUoqFuXllFFrND6F4ea02ZRYVkhCkPEBF0RRVJsLqpjpg==\n",
//! ).unwrap();
//! assert!(file.check("alice", b"secret"));
//! assert!(!file.check("alice", b"Secret"));
//! assert!(!file.check("bob", b"secret"));
//! ```

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha512};

/// Why a password file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file could not be opened or read.
    #[error("cannot read the password file: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not `user:hash` with a hash this broker knows.
    #[error("password file line {line}: {why}")]
    BadLine {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it (the hash itself is never shown).
        why: &'static str,
    },
}

#[derive(Debug, Clone)]
enum Hash {
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

/// The users of a password file and their hashes.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
}

impl PasswordFile {
    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// Reads a password file's text. A user listed twice keeps the last line, as Mosquitto does.
    pub fn parse(text: &str) -> Result<Self, PasswordFileError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why| PasswordFileError::BadLine { line: i + 1, why };
            let (user, hash) = line
                .split_once(':')
                .ok_or(bad("no ':' between user and hash"))?;
            if user.is_empty() {
                return Err(bad("an empty user name"));
            }
            users.insert(user.to_string(), parse_hash(hash).map_err(bad)?);
        }
        Ok(PasswordFile { users })
    }

    /// True if `user` is in the file and `password` is theirs. Compares in constant time.
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(Hash::Sha512 { salt, hash }) => {
                let mut d = Sha512::new();
                d.update(password);
                d.update(salt);
                same(&d.finalize(), hash)
            }
            Some(Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            }) => {
                let mut out = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                same(&out, hash)
            }
            None => false,
        }
    }

    /// The users in the file.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn parse_hash(hash: &str) -> Result<Hash, &'static str> {
    let b64 = |s: &str| {
        STANDARD
            .decode(s)
            .map_err(|_| "a salt or hash that is not base64")
    };
    let parts: Vec<&str> = hash.split('$').collect();
    match parts.as_slice() {
        ["", "6", salt, hash] => Ok(Hash::Sha512 {
            salt: b64(salt)?,
            hash: b64(hash)?,
        }),
        ["", "7", iterations, salt, hash] => {
            let iterations = iterations
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("an iteration count that is not a positive number")?;
            let hash = b64(hash)?;
            if hash.is_empty() || hash.len() > 64 {
                return Err("a PBKDF2 hash of the wrong length");
            }
            Ok(Hash::Pbkdf2 {
                iterations,
                salt: b64(salt)?,
                hash,
            })
        }
        [_] => Err("a plain-text password (hash it with mosquitto_passwd -U)"),
        _ => Err("a hash format other than $6$ or $7$"),
    }
}

/// Constant-time equality: the time taken does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
