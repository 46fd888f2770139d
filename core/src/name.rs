//! Validation shared by the identifier newtypes.

/// The one rule for every name (sites, peers, roles, contexts, partitions), as users read it.
pub(crate) const NAME_RULE: &str =
    "names are 1 to 64 lowercase letters, digits, '-', '_' and '.', starting with a letter or a digit";

/// Checks that `s` is 1..=64 characters of `[a-z0-9._-]`, starting with a letter or digit.
///
/// Identifiers end up in sled keys, certificate fields, file names and log lines, so they
/// are kept to a small, unambiguous alphabet, the same for every kind of name. The reason
/// names the offending character and, for capitals, suggests the lowercase name.
pub(crate) fn check_ident(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("it is empty ({NAME_RULE})"));
    }
    if s.len() > 64 {
        return Err(format!("it is {} bytes long; the maximum is 64", s.len()));
    }
    for (i, c) in s.chars().enumerate() {
        let allowed = c.is_ascii_lowercase() || c.is_ascii_digit();
        if allowed || (i > 0 && matches!(c, '-' | '_' | '.')) {
            continue;
        }
        let which = match c {
            ' ' => "a space".to_string(),
            c if c.is_ascii_uppercase() => {
                return Err(format!(
                    "capital {c:?} is not allowed; {NAME_RULE} (e.g. {:?})",
                    s.to_ascii_lowercase()
                ))
            }
            c => format!("{c:?}"),
        };
        return Err(if i == 0 && matches!(c, '-' | '_' | '.') {
            format!("it starts with {which}; {NAME_RULE}")
        } else {
            format!("{which} is not allowed; {NAME_RULE}")
        });
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
                $crate::name::check_ident(&s).map_err(|reason| $crate::Error::InvalidName {
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
