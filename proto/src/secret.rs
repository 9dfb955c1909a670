//! A credential that cannot leak by accident: `Debug` shows `[redacted]`, there is no `Display`,
//! and the text is reached only through [`Secret::expose`], where it is sent.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A token, an app token, a signing secret. Serialises as the plain string, so configurations
/// and fixtures read as before.
///
/// ```
/// use openflume_proto::Secret;
/// let token = Secret::new("xoxb-1-abc");
/// assert_eq!(format!("{token:?}"), "[redacted]");
/// assert_eq!(token.expose(), "xoxb-1-abc");
/// assert_eq!(format!("{:?}", Secret::default()), "<empty>");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    ///
    /// ```
    /// let secret = openflume_proto::Secret::new(String::from("t0ken"));
    /// assert!(!secret.is_empty());
    /// ```
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The text itself: for the one place that sends it (a header, an IDENTIFY).
    ///
    /// ```
    /// let secret = openflume_proto::Secret::new("t0ken");
    /// let header = format!("Bearer {}", secret.expose());
    /// assert_eq!(header, "Bearer t0ken");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when there is no text (a configuration that forgot its token).
    ///
    /// ```
    /// assert!(openflume_proto::Secret::new("").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<empty>"
        } else {
            "[redacted]"
        })
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text)
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(text.to_owned())
    }
}
