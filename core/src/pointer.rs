//! JSON Pointer paths (RFC 6901) into documents.

use crate::Error;

/// A parsed JSON Pointer: `""` is the document root, `/items/burger/price` a nested field.
///
/// `~1` escapes `/` and `~0` escapes `~` inside a token, as RFC 6901 says. A token that is a
/// decimal number addresses a list element when the parent is a list, and a map key otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    /// The root of the document.
    pub fn root() -> Self {
        Pointer::default()
    }

    /// Parses `s`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Ok(Pointer::root());
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(Error::InvalidPath {
                path: s.to_string(),
                reason: "it must be empty or start with '/'".into(),
            });
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => {
                            return Err(Error::InvalidPath {
                                path: s.to_string(),
                                reason: "'~' must be followed by '0' or '1'".into(),
                            })
                        }
                    }
                } else {
                    token.push(c);
                }
            }
            tokens.push(token);
        }
        Ok(Pointer { tokens })
    }

    /// The unescaped tokens.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Whether this is the root pointer.
    pub fn is_root(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The parent pointer and the last token, or `None` for the root.
    pub fn split_last(&self) -> Option<(Pointer, &str)> {
        let (last, init) = self.tokens.split_last()?;
        Some((
            Pointer {
                tokens: init.to_vec(),
            },
            last.as_str(),
        ))
    }

    /// This pointer with one more token.
    pub fn child(&self, token: impl Into<String>) -> Pointer {
        let mut tokens = self.tokens.clone();
        tokens.push(token.into());
        Pointer { tokens }
    }

    /// Whether `self` equals `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &Pointer) -> bool {
        self.tokens.starts_with(&prefix.tokens)
    }

    /// Whether one of the two pointers is a prefix of the other (a change at one affects the other).
    pub fn overlaps(&self, other: &Pointer) -> bool {
        self.starts_with(other) || other.starts_with(self)
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for t in &self.tokens {
            f.write_str("/")?;
            f.write_str(&t.replace('~', "~0").replace('/', "~1"))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Pointer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Pointer::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc_examples() {
        let p = Pointer::parse("/a~1b/m~0n/0").expect("valid");
        assert_eq!(p.tokens(), ["a/b", "m~n", "0"]);
        assert_eq!(p.to_string(), "/a~1b/m~0n/0");
        assert!(Pointer::parse("").expect("valid").is_root());
        assert_eq!(Pointer::parse("/").expect("valid").tokens(), [""]);
    }

    #[test]
    fn rejects_malformed() {
        for s in ["items", "/a~2", "/a~"] {
            let e = Pointer::parse(s).expect_err(s);
            assert!(e.to_string().contains("JSON Pointer"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn display_parse_roundtrip(tokens in proptest::collection::vec(".*", 0..5)) {
            let p = Pointer { tokens };
            let back = Pointer::parse(&p.to_string()).expect("displayed pointers parse");
            prop_assert_eq!(back, p);
        }
    }
}
