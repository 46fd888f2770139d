//! Who may read and who may write each context.

use std::collections::{BTreeMap, BTreeSet};

use crate::{ContextName, Role};

/// Read and write rights of roles, per context.
///
/// The cloud role may read and write everything. Contexts that the policy does not name
/// follow [`Policy::default_rule`]. Serializable so it can live in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Rules per context.
    pub contexts: BTreeMap<ContextName, ContextRule>,
    /// The rule for contexts not listed in `contexts`.
    pub default_rule: ContextRule,
    /// Roles that may forward changes authored by other devices (see `core/docs/design.md`).
    pub relay_roles: BTreeSet<Role>,
    /// When true every role may read, write and relay every context.
    #[serde(default)]
    pub open: bool,
}

/// The roles that may read and write one context. Writers may always read.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContextRule {
    /// Roles that receive the context's documents.
    pub read: BTreeSet<Role>,
    /// Roles whose changes to the context are accepted.
    pub write: BTreeSet<Role>,
}

fn roles(names: &[&str]) -> BTreeSet<Role> {
    names
        .iter()
        .map(|n| n.parse().expect("built-in role names are valid"))
        .collect()
}

impl ContextRule {
    /// A rule from role names; panics only on invalid built-in names, so for literals.
    pub fn new(read: &[&str], write: &[&str]) -> Self {
        ContextRule {
            read: roles(read),
            write: roles(write),
        }
    }
}

impl Default for Policy {
    /// The restaurant policy used by the demo and the examples:
    ///
    /// | context | read | write |
    /// |---|---|---|
    /// | `menu` | everyone | pos |
    /// | `stock` | everyone | pos, kiosk |
    /// | `orders` | pos, kiosk, kitchen | pos, kiosk, kitchen |
    /// | other | pos | pos |
    ///
    /// `cloud` may read and write everything. Every role that writes also relays others'
    /// changes (see `core/docs/design.md` on why a stricter relay set costs connectivity).
    fn default() -> Self {
        let mut contexts = BTreeMap::new();
        let ctx = |s: &str| {
            s.parse::<ContextName>()
                .expect("built-in context names are valid")
        };
        contexts.insert(
            ctx("menu"),
            ContextRule::new(&["pos", "kiosk", "menu-board", "kitchen"], &["pos"]),
        );
        contexts.insert(
            ctx("stock"),
            ContextRule::new(
                &["pos", "kiosk", "menu-board", "kitchen"],
                &["pos", "kiosk"],
            ),
        );
        contexts.insert(
            ctx("orders"),
            ContextRule::new(&["pos", "kiosk", "kitchen"], &["pos", "kiosk", "kitchen"]),
        );
        Policy {
            contexts,
            default_rule: ContextRule::new(&["pos"], &["pos"]),
            relay_roles: roles(&["cloud", "pos", "kiosk", "kitchen"]),
            open: false,
        }
    }
}

impl Policy {
    /// A policy that lets every role read and write everything (single-user tools, tests).
    pub fn allow_all() -> Self {
        Policy {
            contexts: BTreeMap::new(),
            default_rule: ContextRule::default(),
            relay_roles: BTreeSet::new(),
            open: true,
        }
    }

    fn rule(&self, context: &ContextName) -> &ContextRule {
        self.contexts.get(context).unwrap_or(&self.default_rule)
    }

    /// Whether `role` may receive documents of `context`.
    pub fn may_read(&self, role: &Role, context: &ContextName) -> bool {
        if self.open || role == &Role::cloud() {
            return true;
        }
        let rule = self.rule(context);
        rule.read.contains(role) || rule.write.contains(role)
    }

    /// Whether changes of `role` to `context` are accepted.
    pub fn may_write(&self, role: &Role, context: &ContextName) -> bool {
        self.open || role == &Role::cloud() || self.rule(context).write.contains(role)
    }

    /// Whether `role` may forward changes that other devices authored.
    pub fn may_relay(&self, role: &Role) -> bool {
        self.open || role == &Role::cloud() || self.relay_roles.contains(role)
    }
}
