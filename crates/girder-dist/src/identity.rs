//! Node identity: a name and a shared secret.

use std::fmt;
use std::path::Path;

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

/// The cluster's shared secret. It is only ever used as an HMAC key: never sent, never logged
/// (its `Debug` prints `Cookie(..)`).
///
/// ```
/// use girder_dist::Cookie;
/// let c = Cookie::new("correct-horse-battery-staple").unwrap();
/// assert_eq!(format!("{c:?}"), "Cookie(..)");
/// assert!(Cookie::new("short").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie(Vec<u8>);

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
        Ok(Cookie(text.as_bytes().to_vec()))
    }

    /// Reads a cookie file (one line; a trailing newline is ignored).
    pub fn from_file(path: &Path) -> Result<Self, IdentityError> {
        let text = std::fs::read_to_string(path).map_err(|e| IdentityError::CookieFile {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Cookie::new(&text)
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(..)")
    }
}
