//! Document names: a context plus an optional partition.

use crate::name::{check_ident, ident_newtype};
use crate::Error;

ident_newtype!(
    /// A bounded context of the business, e.g. `menu`, `orders` or `stock`.
    ContextName, "context name", "menu"
);

/// The stable name of a document: a context and an optional partition.
///
/// `menu`, `stock` and `orders/2026-11-24` are document ids. Partitions keep a document
/// that grows every day small; a partition is just another document of the same context,
/// with the same access rights.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct DocumentId {
    context: ContextName,
    partition: Option<String>,
}

impl DocumentId {
    /// A document of `context` without a partition.
    pub fn new(context: ContextName) -> Self {
        DocumentId {
            context,
            partition: None,
        }
    }

    /// A partition of `context`, e.g. `orders` + `2026-11-24`.
    pub fn partitioned(context: ContextName, partition: &str) -> Result<Self, Error> {
        check_ident(partition).map_err(|reason| Error::InvalidName {
            kind: "document partition",
            name: partition.to_string(),
            reason,
            example: "2026-11-24",
        })?;
        Ok(DocumentId {
            context,
            partition: Some(partition.to_string()),
        })
    }

    /// The context this document belongs to; access rights are granted per context.
    pub fn context(&self) -> &ContextName {
        &self.context
    }

    /// The partition, if any.
    pub fn partition(&self) -> Option<&str> {
        self.partition.as_deref()
    }
}

impl std::fmt::Display for DocumentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.partition {
            Some(p) => write!(f, "{}/{}", self.context, p),
            None => write!(f, "{}", self.context),
        }
    }
}

impl std::str::FromStr for DocumentId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let wrap = |e: Error| match e {
            Error::InvalidName { reason, .. } => Error::InvalidName {
                kind: "document id",
                name: s.to_string(),
                reason,
                example: if s.contains('/') {
                    "orders/2026-11-24"
                } else {
                    "menu"
                },
            },
            other => other,
        };
        let empty = |part: &str| Error::InvalidName {
            kind: "document id",
            name: s.to_string(),
            reason: format!("the {part} is empty"),
            example: "orders/2026-11-24",
        };
        match s.split_once('/') {
            None => Ok(DocumentId::new(s.parse().map_err(wrap)?)),
            Some(("", _)) => Err(empty("context before '/'")),
            Some((_, "")) => Err(empty("partition after '/'")),
            Some((c, p)) => DocumentId::partitioned(c.parse().map_err(wrap)?, p).map_err(wrap),
        }
    }
}

impl TryFrom<String> for DocumentId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<DocumentId> for String {
    fn from(d: DocumentId) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for s in [
            "menu",
            "orders/2026-11-24",
            "stock_2",
            "orders/a.b-c",
            "v1.2",
        ] {
            let id: DocumentId = s.parse().expect("valid id");
            assert_eq!(id.to_string(), s);
        }
        let id: DocumentId = "orders/2026-11-24".parse().expect("valid id");
        assert_eq!(id.context().as_str(), "orders");
        assert_eq!(id.partition(), Some("2026-11-24"));
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        for s in [
            "",
            "Menu",
            "menu/",
            "a/b/c",
            "-x",
            "menu items",
            &"x".repeat(65),
            "é",
        ] {
            let err = s.parse::<DocumentId>().expect_err(s);
            let msg = err.to_string();
            assert!(msg.contains("document id"), "{msg}");
        }
    }

    #[test]
    fn messages_name_what_is_wrong() {
        let msg = |s: &str| s.parse::<DocumentId>().expect_err(s).to_string();
        assert!(
            msg("Orders").contains("capital 'O' is not allowed"),
            "{}",
            msg("Orders")
        );
        assert!(msg("Orders").contains("\"orders\""), "{}", msg("Orders"));
        assert!(
            msg("ORDERS/x").contains("capital 'O'"),
            "{}",
            msg("ORDERS/x")
        );
        assert!(
            msg("orders/X").contains("capital 'X'"),
            "{}",
            msg("orders/X")
        );
        assert!(
            msg("/orders").contains("context before '/' is empty"),
            "{}",
            msg("/orders")
        );
        assert!(msg("orders/").contains("partition after '/' is empty"));
        assert!(
            msg("a/b/c").contains("'/' is not allowed"),
            "{}",
            msg("a/b/c")
        );
        assert!(msg("-x").contains("starts with '-'"), "{}", msg("-x"));
        assert!(msg("menu items").contains("a space is not allowed"));
        // One example, quoted alone, not "menu or orders/...".
        assert!(msg("Menu").contains("like \"menu\""), "{}", msg("Menu"));
        assert!(!msg("Menu").contains(" or orders"), "{}", msg("Menu"));
        let site = "Paris 11"
            .parse::<crate::SiteId>()
            .expect_err("site")
            .to_string();
        assert!(site.contains("capital 'P'"), "{site}");
    }
}
