//! Node identity: a name and a shared secret.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// Why a name or cookie was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A node name must look like `name@host`.
    #[error("invalid node name {name:?}: {why}")]
    BadName {
        /// The text given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A cookie must be 16 to 1024 bytes of printable ASCII without spaces.
    #[error("invalid cookie: {0}")]
    BadCookie(&'static str),
    /// The cookie file could not be read.
    #[error("cannot read cookie file {path}: {error}")]
    CookieFile {
        /// The file.
        path: String,
        /// The I/O error.
        error: String,
    },
    /// A secret's file can be read by users other than its owner (as ssh refuses such keys).
    #[error("{path} is readable by group or others (mode {mode:o}): run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// Checks that a file holding a secret (a cookie, an admin token) is readable by its owner
/// only, as ssh checks private keys, and reads at most `max` bytes of it (so `/dev/zero` or a
/// wrong path to a large file ends in an error, not in memory).
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt;
/// let path = std::env::temp_dir().join(format!("girder-doc-secret-{}", std::process::id()));
/// std::fs::write(&path, "s3cret-s3cret-s3cret\n").unwrap();
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
/// assert!(girder_dist::read_secret_file(&path, 1024).is_err());
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
/// assert_eq!(girder_dist::read_secret_file(&path, 1024).unwrap(), "s3cret-s3cret-s3cret\n");
/// # std::fs::remove_file(&path).unwrap();
/// # }
/// ```
pub fn read_secret_file(path: &Path, max: usize) -> Result<String, IdentityError> {
    read_secret(path, max)
}

/// Writes a secret (a cookie, an admin token) to `path`, readable by its owner only, as
/// [`read_secret_file`] demands. A file already there is replaced (its mode would stay).
///
/// ```
/// let path = std::env::temp_dir().join(format!("girder-doc-write-{}", std::process::id()));
/// girder_dist::write_secret_file(&path, "a-cookie-of-decent-length\n").unwrap();
/// assert!(girder_dist::Cookie::from_file(&path).is_ok());
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn write_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

fn read_secret(path: &Path, max: usize) -> Result<String, IdentityError> {
    use std::io::Read;
    let failed = |error: String| IdentityError::CookieFile {
        path: path.display().to_string(),
        error,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file.metadata().map_err(|e| failed(e.to_string()))?;
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o077 != 0 {
            return Err(IdentityError::Exposed {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(e.to_string()))?;
    if bytes.len() > max {
        return Err(failed(format!("longer than {max} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| failed("not text".into()))
}

/// A node's name, `name@host`, as Erlang spells it.
///
/// ```
/// use girder_dist::NodeName;
/// let n: NodeName = "broker1@10.0.0.5".parse().unwrap();
/// assert_eq!(n.name(), "broker1");
/// assert_eq!(n.host(), "10.0.0.5");
/// assert!("no-at-sign".parse::<NodeName>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeName(String);

const MAX_NAME: usize = 255;

impl NodeName {
    /// Checks and wraps `text`.
    pub fn new(text: &str) -> Result<Self, IdentityError> {
        let bad = |why| IdentityError::BadName {
            name: text.chars().take(64).collect(),
            why,
        };
        if text.len() > MAX_NAME {
            return Err(bad("longer than 255 bytes"));
        }
        let (name, host) = text.split_once('@').ok_or_else(|| bad("missing '@'"))?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !ok(name) {
            return Err(bad(
                "the part before '@' must be letters, digits, '-', '_' or '.'",
            ));
        }
        if !ok(host) {
            return Err(bad("the host must be letters, digits, '-', '_' or '.'"));
        }
        Ok(NodeName(text.to_string()))
    }

    /// The part before `@`.
    pub fn name(&self) -> &str {
        self.0.split_once('@').map(|(n, _)| n).unwrap_or(&self.0)
    }

    /// The part after `@`.
    pub fn host(&self) -> &str {
        self.0.split_once('@').map(|(_, h)| h).unwrap_or("")
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for NodeName {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The cluster's shared secret: never sent, never logged (its `Debug` prints `Cookie(..)`).
///
/// It is not used as a key directly. Keys for the handshake's proofs and for sealing membership
/// datagrams are derived from it once, with the memory-hard Argon2id (32 MiB, 2 passes), so that
/// someone who recorded a handshake or a datagram pays tens of milliseconds and 32 MiB for every
/// guess they test offline, not a microsecond. The salt is fixed (there is no per-cluster value
/// both sides know before the first message): a cookie must be random, not a word (see
/// [`weakness`](Self::weakness)).
///
/// ```
/// use girder_dist::Cookie;
/// let c = Cookie::new("correct-horse-battery-staple").unwrap();
/// assert_eq!(format!("{c:?}"), "Cookie(..)");
/// assert!(Cookie::new("short").is_err());
/// ```
#[derive(Clone)]
pub struct Cookie(Arc<Secret>);

struct Secret {
    text: Vec<u8>,
    keys: OnceLock<Keys>,
}

/// The keys derived from a cookie.
#[derive(Clone, Copy)]
pub(crate) struct Keys {
    /// HMAC key of the handshake's proofs.
    pub(crate) handshake: [u8; 32],
    /// AEAD key of membership datagrams.
    pub(crate) membership: [u8; 32],
}

impl PartialEq for Cookie {
    fn eq(&self, other: &Self) -> bool {
        self.0.text == other.0.text
    }
}

impl Eq for Cookie {}

/// Argon2id's cost: memory in KiB and passes. OWASP's floor is 19 MiB and 2 passes; twice the
/// memory makes a guess cost about 50 ms on one core of a current server.
const KDF_MEMORY_KIB: u32 = 32 * 1024;
const KDF_PASSES: u32 = 2;

fn derive(text: &[u8]) -> Keys {
    use hmac::{KeyInit, Mac};
    // One derivation per distinct cookie in a process: a program (or a test suite) that builds
    // many `Cookie`s from the same text pays once.
    static DERIVED: Mutex<Vec<(Vec<u8>, Keys)>> = Mutex::new(Vec::new());
    let mut derived = DERIVED.lock().expect("not poisoned");
    if let Some((_, keys)) = derived.iter().find(|(t, _)| t == text) {
        return *keys;
    }
    let params = argon2::Params::new(KDF_MEMORY_KIB, KDF_PASSES, 1, Some(32)).expect("valid");
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut master = [0u8; 32];
    kdf.hash_password_into(text, b"girder cluster cookie, v1", &mut master)
        .expect("cookie and salt lengths are within Argon2's limits");
    let expand = |label: &[u8]| -> [u8; 32] {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&master).expect("any key size");
        mac.update(label);
        mac.finalize().into_bytes().into()
    };
    let keys = Keys {
        handshake: expand(b"girder-dist handshake proof"),
        membership: expand(b"girder-membership datagram seal"),
    };
    if derived.len() >= 8 {
        derived.remove(0);
    }
    derived.push((text.to_vec(), keys));
    keys
}

impl Cookie {
    /// Checks and wraps a cookie: 16 to 1024 bytes of printable ASCII without spaces.
    pub fn new(text: &str) -> Result<Self, IdentityError> {
        let text = text.trim_end_matches(['\n', '\r']);
        if text.len() < 16 {
            return Err(IdentityError::BadCookie("shorter than 16 bytes"));
        }
        if text.len() > 1024 {
            return Err(IdentityError::BadCookie("longer than 1024 bytes"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdentityError::BadCookie(
                "only printable ASCII without spaces",
            ));
        }
        Ok(Cookie(Arc::new(Secret {
            text: text.as_bytes().to_vec(),
            keys: OnceLock::new(),
        })))
    }

    /// Reads a cookie file (one line; a trailing newline is ignored). The file must be readable
    /// by its owner only (`chmod 600`), as ssh demands of private keys: a cookie others can read
    /// lets them into the cluster. At most 1 KiB is read.
    pub fn from_file(path: &Path) -> Result<Self, IdentityError> {
        Cookie::new(&read_secret_file(path, 1026)?)
    }

    /// Why this cookie is easy to guess, if it is: an estimate of its strength (its length
    /// times the bits of its alphabet) under 64 bits. A warning, not a refusal: a weak cookie
    /// still works, but a passive observer of the membership traffic can test guesses offline.
    ///
    /// ```
    /// use girder_dist::Cookie;
    /// assert!(Cookie::new("aaaaaaaaaaaaaaaa").unwrap().weakness().is_some());
    /// assert!(Cookie::new("correct-horse-battery-staple").unwrap().weakness().is_none());
    /// ```
    pub fn weakness(&self) -> Option<String> {
        let mut seen = [false; 256];
        for &b in &self.0.text {
            seen[b as usize] = true;
        }
        let distinct = seen.iter().filter(|s| **s).count().max(1);
        let bits = self.0.text.len() as f64 * (distinct as f64).log2();
        (bits < 64.0).then(|| {
            format!(
                "{} bytes from {distinct} different characters: about {bits:.0} bits, under 64; \
                 use a long random one (openssl rand -base64 32)",
                self.0.text.len()
            )
        })
    }

    /// Derives the keys now, if they were not yet (Argon2id: tens of milliseconds, 32 MiB).
    /// Nodes and membership agents call it as they start, so that no handshake or datagram
    /// waits for it; a program may call it earlier, e.g. on a blocking thread.
    ///
    /// ```
    /// let cookie = girder_dist::Cookie::new("correct-horse-battery-staple").unwrap();
    /// cookie.derive_keys();
    /// ```
    pub fn derive_keys(&self) {
        self.keys();
    }

    pub(crate) fn keys(&self) -> &Keys {
        self.0.keys.get_or_init(|| derive(&self.0.text))
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn secret_files_must_be_private_and_small() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("girder-secret-test-{}", std::process::id()));
        std::fs::write(&path, "a-cookie-of-decent-length\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Cookie::from_file(&path).unwrap_err();
            assert!(
                matches!(e, IdentityError::Exposed { mode: m, .. } if m == mode),
                "{mode:o}: {e}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Cookie::from_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Cookie::from_file(&path).is_ok());
        // Bigger than any cookie: refused after reading 1 KiB, not read whole.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "x".repeat(10 << 20)).unwrap();
        let e = Cookie::from_file(&path).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        std::fs::remove_file(&path).unwrap();
        // A device that never ends.
        assert!(Cookie::from_file(Path::new("/dev/zero")).is_err());
    }
}
