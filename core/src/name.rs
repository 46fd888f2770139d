//! Validation shared by the identifier newtypes.

/// Checks that `s` is 1..=64 characters of `[a-z0-9_-]`, starting with a letter or digit.
///
/// Identifiers end up in sled keys, certificate fields, file names and log lines, so they
/// are kept to a small, unambiguous alphabet.
pub(crate) fn check_ident(s: &str, allow_upper_and_dot: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.len() > 64 {
        return Err(format!("it is {} bytes long; the maximum is 64", s.len()));
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_lowercase()
        || first.is_ascii_digit()
        || (allow_upper_and_dot && first.is_ascii_uppercase()))
    {
        return Err("it must start with a letter or a digit".into());
    }
    for c in s.chars() {
        let ok = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || c == '_'
            || (allow_upper_and_dot && (c.is_ascii_uppercase() || c == '.'));
        if !ok {
            return Err(format!(
                "character {c:?} is not allowed (use {})",
                if allow_upper_and_dot {
                    "letters, digits, '.', '-' and '_'"
                } else {
                    "lowercase letters, digits, '-' and '_'"
                }
            ));
        }
    }
    Ok(())
}

/// Declares a validated string newtype with `Display`, `FromStr`, serde and `as_str`.
macro_rules! ident_newtype {
    ($(#[$meta:meta])* $name:ident, $what:literal, $example:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, $crate::Error> {
                let s = s.into();
                $crate::name::check_ident(&s, false).map_err(|reason| $crate::Error::InvalidName {
                    kind: $what,
                    name: s.clone(),
                    reason,
                    example: $example,
                })?;
                Ok(Self(s))
            }
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = $crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = $crate::Error;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}
pub(crate) use ident_newtype;
