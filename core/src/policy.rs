//! Who may read and who may write each context.

use std::collections::{BTreeMap, BTreeSet};

use crate::{ContextName, PeerId, Pointer, Role};

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
    /// Where signatures are checked, any role may forward a change its author signed.
    pub relay_roles: BTreeSet<Role>,
    /// When true every role may read, write and relay every context.
    #[serde(default)]
    pub open: bool,
    /// Which web-client roles (tokens for automerge-repo clients, e.g. `kds`, `guest`) a
    /// device of each role may accept and vouch for with its signature (see
    /// `core/docs/design.md`, "Web clients").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vouch: BTreeMap<Role, BTreeSet<Role>>,
}

/// The roles that may read and write one context. Writers may always read.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContextRule {
    /// Roles that receive the context's documents.
    pub read: BTreeSet<Role>,
    /// Roles whose changes to the context are accepted.
    pub write: BTreeSet<Role>,
    /// Days a role keeps the dated partitions of the context (`orders/2026-12-01`: the
    /// partition starts with `YYYY-MM-DD`); roles not listed, undated documents and the cloud
    /// keep everything. A device drops an older partition once a cloud peer holds all of it
    /// (never the only copy), and peers do not send it back (see `core/docs/design.md`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retain_days: BTreeMap<Role, u32>,
    /// Write rules for paths inside the context's documents, e.g. only the kitchen writes
    /// `/orders/*/kitchen`, only a POS writes `/orders/*/payment`. A write at a path follows
    /// the most specific rule whose pattern matches the path or one of its parents (no rule:
    /// the context's `write`); a write that replaces or deletes what was there also needs the
    /// rights of every rule below it (so no role wipes the kitchen's state by rewriting the
    /// order). Checked on local writes and on every received change, by the role of the
    /// change's author (see `core/docs/design.md`, "Per-path write rules").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathRule>,
    /// Where the context's documents live: in each site (the default), or once for the whole
    /// fleet (`scope = "fleet"`: a catalog, prices). A fleet document is held once by the
    /// cloud and reaches every site's devices, which read it offline like any other; who may
    /// write it is the rule's `write` as usual (typically a head-office role only), so a
    /// site's devices cannot change what the whole fleet reads (see `core/docs/design.md`,
    /// "Fleet-wide contexts").
    #[serde(default, skip_serializing_if = "Scope::is_site")]
    pub scope: Scope,
    /// What one item of the context's documents is, for feeds (`outpost watch --consumer`,
    /// `Feed`, the bindings' feeds): a pattern ending in `/*`, e.g. `/orders/*` (one item per
    /// order, the README's layout: `/orders/K1-001`). A feed that names no item path of its
    /// own delivers the paths one level below the pattern's parent; without it, a document's
    /// top-level keys (`/*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<FeedItems>,
}

/// What one item of a document is, for feeds: a JSON Pointer pattern whose last token is
/// `*` and no other is (`/orders/*`, `/*`). Items are the paths one level below its parent
/// (`/orders/K1-001`), each once per batch however many of its fields changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FeedItems {
    parent: Pointer,
}

impl FeedItems {
    /// Parses a pattern such as `/orders/*`.
    pub fn parse(pattern: &str) -> Result<Self, crate::Error> {
        let invalid = |reason: &str| crate::Error::InvalidName {
            kind: "item pattern",
            name: pattern.to_string(),
            reason: reason.to_string(),
            example: "/orders/*",
        };
        let parent = pattern.strip_suffix("/*").ok_or_else(|| {
            invalid("it must end with /* (the item is the key that * stands for)")
        })?;
        let parent = Pointer::parse(parent)
            .map_err(|_| invalid("it must be a JSON Pointer ending with /*"))?;
        if parent.tokens().iter().any(|t| t == "*") {
            return Err(invalid("only its last token may be *"));
        }
        Ok(FeedItems { parent })
    }

    /// The items one level below `parent` (`/orders` for `/orders/*`).
    pub fn below(parent: Pointer) -> Self {
        FeedItems { parent }
    }

    /// The path whose children are the items (`/orders` for `/orders/*`; the root for `/*`).
    pub fn parent(&self) -> &Pointer {
        &self.parent
    }
}

impl std::fmt::Display for FeedItems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.parent.tokens().is_empty() {
            write!(f, "/*")
        } else {
            write!(f, "{}/*", self.parent)
        }
    }
}

impl std::str::FromStr for FeedItems {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FeedItems::parse(s)
    }
}

impl TryFrom<String> for FeedItems {
    type Error = crate::Error;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        FeedItems::parse(&s)
    }
}

impl From<FeedItems> for String {
    fn from(i: FeedItems) -> String {
        i.to_string()
    }
}

/// Where the documents of a context live (see [`ContextRule::scope`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each site has its own documents of the context.
    #[default]
    Site,
    /// One document for the whole fleet, held once by the cloud and synced to every site.
    Fleet,
}

impl Scope {
    fn is_site(&self) -> bool {
        *self == Scope::Site
    }
}

/// The roles that may write at and below a path pattern of a context: JSON Pointer tokens,
/// `*` matching any one token (`/orders/*/payment`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathRule {
    /// The pattern, e.g. `/orders/*/kitchen`.
    pub path: String,
    /// The roles whose writes at or below a matching path are accepted (the cloud's always
    /// are). They must also be allowed to write the context.
    pub write: BTreeSet<Role>,
}

impl PathRule {
    /// A rule from a pattern and role names; panics only on invalid built-in names, so for
    /// literals.
    pub fn new(path: &str, write: &[&str]) -> Self {
        PathRule {
            path: path.to_string(),
            write: roles(write),
        }
    }

    fn tokens(&self) -> Vec<&str> {
        self.path.split('/').skip(1).collect()
    }

    /// Whether the pattern matches `path` or one of its parents: how specific the match is
    /// (tokens spanned, then tokens that are not `*`; [`DEVICE_TOKEN`] matches any token and
    /// counts as specific).
    fn covers(&self, path: &Pointer) -> Option<(usize, usize)> {
        let pattern = self.tokens();
        let tokens = path.tokens();
        (pattern.len() <= tokens.len()
            && pattern
                .iter()
                .zip(tokens)
                .all(|(p, t)| *p == "*" || *p == DEVICE_TOKEN || *p == t.as_str()))
        .then(|| {
            let specific = pattern.iter().filter(|p| **p != "*").count();
            (pattern.len(), specific)
        })
    }

    /// Whether the rule grants `role`, writing as `device`, the write at `path` it covers:
    /// the role is one of its writers and, where the pattern has [`DEVICE_TOKEN`], the token
    /// of `path` there is the device's own id.
    fn grants(&self, role: &Role, device: Option<&PeerId>, path: &Pointer) -> bool {
        self.write.contains(role)
            && self
                .tokens()
                .iter()
                .zip(path.tokens())
                .filter(|(p, _)| **p == DEVICE_TOKEN)
                .all(|(_, t)| device.is_some_and(|d| d.as_str() == t.as_str()))
    }

    /// Whether the pattern lies strictly below `path` (replacing `path` replaces what the
    /// rule guards).
    fn below(&self, path: &Pointer) -> bool {
        let pattern = self.tokens();
        let tokens = path.tokens();
        pattern.len() > tokens.len()
            && pattern
                .iter()
                .zip(tokens)
                .all(|(p, t)| *p == "*" || *p == DEVICE_TOKEN || *p == t.as_str())
    }
}

/// A path pattern token that stands for the id of the device that writes (the author of the
/// change, as its certificate proves): `/devices/{device}` in `health` covers every
/// device's entry and grants each device only its own. More specific than `*` at the same
/// place. The parent of such entries (`/devices`) is made by the document's genesis
/// (`crate::genesis`), the same object on every device.
pub const DEVICE_TOKEN: &str = "{device}";

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
            retain_days: BTreeMap::new(),
            paths: Vec::new(),
            scope: Scope::Site,
            items: None,
        }
    }

    /// This rule, with feed items matching `pattern` (see [`ContextRule::items`]); panics
    /// only on an invalid pattern, so for literals.
    pub fn items(mut self, pattern: &str) -> Self {
        self.items = Some(FeedItems::parse(pattern).expect("built-in item patterns are valid"));
        self
    }

    /// This rule, for a context of fleet scope (see [`ContextRule::scope`]).
    pub fn fleet(mut self) -> Self {
        self.scope = Scope::Fleet;
        self
    }

    /// This rule, with only `write` roles writing at and below `path` (see [`PathRule`]).
    pub fn path(mut self, path: &str, write: &[&str]) -> Self {
        self.paths.push(PathRule::new(path, write));
        self
    }

    /// This rule, with `role` keeping dated partitions `days` days.
    pub fn retain(mut self, role: &str, days: u32) -> Self {
        self.retain_days
            .insert(role.parse().expect("built-in role names are valid"), days);
        self
    }
}

/// The day a partition is dated (its name starts with `YYYY-MM-DD`), as a Julian day number.
fn partition_day(doc: &crate::DocumentId) -> Option<i32> {
    let p = doc.partition()?;
    let (y, rest) = (p.get(0..4)?, p.get(4..)?);
    let (m, d) = (rest.get(1..3)?, rest.get(4..6)?);
    if rest.get(0..1)? != "-" || rest.get(3..4)? != "-" {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.to_julian_day())
}

/// The Julian day number of `now`.
fn today(now: crate::Timestamp) -> i32 {
    let days = (now.as_millis() / 86_400_000) as i64;
    // 1970-01-01 is Julian day 2,440,588.
    i32::try_from(days + 2_440_588).unwrap_or(i32::MAX)
}

impl Default for Policy {
    /// The restaurant policy used by the demo and the examples:
    ///
    /// | context | read | write |
    /// |---|---|---|
    /// | `menu` | everyone | pos |
    /// | `stock` | everyone | pos, kiosk |
    /// | `orders` | pos, kiosk, kitchen | pos, kiosk, kitchen; per path: `/orders/*` pos, kiosk; `/orders/*/kitchen` kitchen; `/orders/*/payment` and `/orders/*/closed` pos; feed items `/orders/*` |
    /// | `health` | pos | every device role; per path: `/devices/{device}` the device itself (each publishes only its own entry), nothing else |
    /// | `catalog`, `prices` (fleet scope) | everyone | head-office |
    /// | other | pos | pos |
    ///
    /// `catalog` and `prices` are of fleet scope: one copy for the whole fleet, written by
    /// head office through the cloud; a site overrides a price in its own `prices_override`
    /// (written by pos). `cloud` may read and write everything. Every role that writes also relays others'
    /// changes (see `core/docs/design.md` on why a stricter relay set costs connectivity).
    fn default() -> Self {
        let mut contexts = BTreeMap::new();
        let ctx = |s: &str| {
            s.parse::<ContextName>()
                .expect("built-in context names are valid")
        };
        contexts.insert(
            ctx("menu"),
            ContextRule::new(
                &["pos", "kiosk", "menu-board", "kitchen", "kds", "guest"],
                &["pos"],
            ),
        );
        contexts.insert(
            ctx("stock"),
            ContextRule::new(
                &["pos", "kiosk", "menu-board", "kitchen"],
                &["pos", "kiosk"],
            ),
        );
        // The order's life (see `core/docs/design.md`, "The order's life"): a kiosk or a
        // POS places it, the kitchen alone moves it through `kitchen` (in progress, ready),
        // a POS alone takes the payment and closes it.
        contexts.insert(
            ctx("orders"),
            ContextRule::new(
                &["pos", "kiosk", "kitchen", "kds"],
                &["pos", "kiosk", "kitchen", "kds"],
            )
            .path("/orders/*", &["pos", "kiosk"])
            .path("/orders/*/kitchen", &["kitchen", "kds"])
            .path("/orders/*/payment", &["pos"])
            .path("/orders/*/closed", &["pos"])
            .items("/orders/*"),
        );
        // Each device's health (see `outpost_transport::DeviceHealth`), for the cloud: each
        // device writes only its own entry `/devices/<its id>`, and nothing beside it: no
        // device replaces `/devices` (the document's genesis makes it, the same object on
        // every device, so first reports made concurrently all land in it).
        let devices = ["pos", "kiosk", "menu-board", "kitchen"];
        contexts.insert(
            ctx("health"),
            ContextRule::new(&["pos"], &devices)
                .path("/*", &[])
                .path("/devices/{device}", &devices),
        );
        // Fleet-wide: head office writes, every device of every site reads.
        for fleet in ["catalog", "prices"] {
            contexts.insert(
                ctx(fleet),
                ContextRule::new(&devices, &["head-office"]).fleet(),
            );
        }
        contexts.insert(ctx("prices_override"), ContextRule::new(&devices, &["pos"]));
        // Web clients (automerge-repo over WebSocket, issue 29): a customer's phone reads
        // the menu and the offers and writes its own cart (`carts/<guest id>`: the device
        // that accepts it keeps a guest to the partition named after its token).
        contexts.insert(
            ctx("offers"),
            ContextRule::new(
                &["pos", "kiosk", "menu-board", "kitchen", "guest"],
                &["pos"],
            ),
        );
        contexts.insert(
            ctx("carts"),
            ContextRule::new(&["pos", "guest"], &["pos", "guest"]),
        );
        let mut vouch = BTreeMap::new();
        vouch.insert(Role::cloud(), roles(&["kds", "guest"]));
        vouch.insert("pos".parse().expect("valid"), roles(&["kds", "guest"]));
        vouch.insert("kitchen".parse().expect("valid"), roles(&["kds"]));
        Policy {
            contexts,
            default_rule: ContextRule::new(&["pos"], &["pos"]),
            relay_roles: roles(&["cloud", "pos", "kiosk", "kitchen"]),
            open: false,
            vouch,
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
            vouch: BTreeMap::new(),
        }
    }

    fn rule(&self, context: &ContextName) -> &ContextRule {
        self.contexts.get(context).unwrap_or(&self.default_rule)
    }

    /// Whether `context` is of fleet scope: one copy for the whole fleet (see
    /// [`ContextRule::scope`]). Only contexts the policy names can be; the default rule's
    /// scope is ignored.
    pub fn is_fleet(&self, context: &ContextName) -> bool {
        self.contexts
            .get(context)
            .is_some_and(|r| r.scope == Scope::Fleet)
    }

    /// The contexts of fleet scope.
    pub fn fleet_contexts(&self) -> Vec<&ContextName> {
        self.contexts
            .iter()
            .filter(|(_, r)| r.scope == Scope::Fleet)
            .map(|(c, _)| c)
            .collect()
    }

    /// Whether `role` keeps `doc` at `now` under the context's retention (see
    /// [`ContextRule::retain_days`]). The cloud keeps everything.
    pub fn retains(&self, role: &Role, doc: &crate::DocumentId, now: crate::Timestamp) -> bool {
        if role == &Role::cloud() {
            return true;
        }
        let Some(days) = self.rule(doc.context()).retain_days.get(role) else {
            return true;
        };
        match partition_day(doc) {
            Some(day) => today(now) - day < i32::try_from(*days).unwrap_or(i32::MAX),
            None => true,
        }
    }

    /// Whether `role` may receive documents of `context`.
    ///
    /// The context `erasures` (the cloud's list of documents erased fleet-wide, see
    /// `core/docs/design.md`) is read by every role and written by the cloud only, whatever
    /// the rules say.
    pub fn may_read(&self, role: &Role, context: &ContextName) -> bool {
        if self.open || role == &Role::cloud() || context.as_str() == crate::ERASURES_DOC {
            return true;
        }
        let rule = self.rule(context);
        rule.read.contains(role) || rule.write.contains(role)
    }

    /// Whether changes of `role` to `context` are accepted.
    pub fn may_write(&self, role: &Role, context: &ContextName) -> bool {
        if context.as_str() == crate::ERASURES_DOC {
            return self.open || role == &Role::cloud();
        }
        self.open || role == &Role::cloud() || self.rule(context).write.contains(role)
    }

    /// What one item of `context`'s documents is for feeds, if the policy says
    /// ([`ContextRule::items`]).
    pub fn feed_items(&self, context: &ContextName) -> Option<&FeedItems> {
        self.rule(context).items.as_ref()
    }

    /// Whether the context has per-path write rules (received changes are then decoded to
    /// check the paths they write).
    pub fn has_path_rules(&self, context: &ContextName) -> bool {
        !self.open && !self.rule(context).paths.is_empty()
    }

    /// Whether `role` may write at `path` in `context`: the most specific [`PathRule`]
    /// covering the path decides (the context's writers if none does); `replaces` (the
    /// write overwrites or deletes a value) also needs every rule below the path. Does not
    /// check [`Policy::may_write`].
    pub fn may_write_path(
        &self,
        role: &Role,
        context: &ContextName,
        path: &Pointer,
        replaces: bool,
    ) -> bool {
        self.may_write_path_as(role, None, context, path, replaces)
    }

    /// [`Policy::may_write_path`] for a write by device `device` (of role `role`): a rule
    /// whose pattern holds [`DEVICE_TOKEN`] covers only that device's own entry. Without a
    /// device, such rules cover nothing (a role alone never writes a device's entry).
    pub fn may_write_path_as(
        &self,
        role: &Role,
        device: Option<&PeerId>,
        context: &ContextName,
        path: &Pointer,
        replaces: bool,
    ) -> bool {
        if self.open || role == &Role::cloud() {
            return true;
        }
        let rule = self.rule(context);
        let mut best: Option<((usize, usize), &PathRule)> = None;
        for r in &rule.paths {
            if let Some(n) = r.covers(path) {
                if best.is_none_or(|(m, _)| n > m) {
                    best = Some((n, r));
                }
            }
        }
        let here = match best {
            Some((_, r)) => r.grants(role, device, path),
            None => rule.write.contains(role),
        };
        here && (!replaces
            || rule
                .paths
                .iter()
                .filter(|r| r.below(path))
                .all(|r| r.write.contains(role)))
    }

    /// Why `role` may not write `path` in `context`, for error messages: the patterns that
    /// refuse it.
    pub fn path_refusal(&self, role: &Role, context: &ContextName, path: &Pointer) -> String {
        let rule = self.rule(context);
        rule.paths
            .iter()
            .filter(|r| !r.write.contains(role) && (r.covers(path).is_some() || r.below(path)))
            .map(|r| {
                let who: Vec<&str> = r.write.iter().map(Role::as_str).collect();
                format!("{} is written by {}", r.path, who.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The containers a context's path rules declare, each as its tokens, parents before
    /// children: for each pattern, every proper prefix up to its first wildcard
    /// (`/orders/*/kitchen` gives `/orders`, `/devices/{device}` gives `/devices`, a literal
    /// `/a/b` gives `/a`). These are the maps the document's genesis change creates (see
    /// `crate::genesis`), so every device holds them as one object.
    pub(crate) fn containers(&self, context: &ContextName) -> Vec<Vec<String>> {
        let mut out: BTreeSet<Vec<String>> = BTreeSet::new();
        for r in &self.rule(context).paths {
            let tokens = r.tokens();
            let literal = tokens
                .iter()
                .position(|t| *t == "*" || *t == DEVICE_TOKEN)
                .unwrap_or(tokens.len().saturating_sub(1));
            for end in 1..=literal {
                out.insert(tokens[..end].iter().map(|t| t.to_string()).collect());
            }
        }
        // A BTreeSet of token lists orders each parent before its children.
        out.into_iter().collect()
    }

    /// Whether a device of role `device` may accept web clients of role `client` and vouch
    /// for their writes. An open policy allows every pair.
    pub fn may_vouch(&self, device: &Role, client: &Role) -> bool {
        self.open || self.vouch.get(device).is_some_and(|c| c.contains(client))
    }

    /// Whether `role` may forward changes that other devices authored.
    pub fn may_relay(&self, role: &Role) -> bool {
        self.open || role == &Role::cloud() || self.relay_roles.contains(role)
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    #[test]
    fn dated_partitions_are_kept_their_days() {
        let mut p = Policy::default();
        p.contexts.insert(
            "orders".parse().expect("valid"),
            ContextRule::new(&["pos", "kitchen"], &["pos", "kitchen"])
                .retain("kitchen", 1)
                .retain("pos", 7),
        );
        // 2026-12-01T12:00Z.
        let now = crate::Timestamp(1_796_126_400_000);
        let doc = |s: &str| -> crate::DocumentId { s.parse().expect("valid") };
        let kitchen: Role = "kitchen".parse().expect("valid");
        let pos: Role = "pos".parse().expect("valid");
        assert!(p.retains(&kitchen, &doc("orders/2026-12-01"), now));
        assert!(!p.retains(&kitchen, &doc("orders/2026-11-30"), now));
        assert!(p.retains(&pos, &doc("orders/2026-11-25"), now));
        assert!(!p.retains(&pos, &doc("orders/2026-11-24"), now));
        assert!(p.retains(&Role::cloud(), &doc("orders/2020-01-01"), now));
        assert!(
            p.retains(&kitchen, &doc("orders/late-shift"), now),
            "undated"
        );
        assert!(
            p.retains(&kitchen, &doc("orders/2026-13-01"), now),
            "not a date"
        );
        assert!(p.retains(&kitchen, &doc("menu"), now));
        assert!(!p.retains(&kitchen, &doc("orders/2026-11-30-lunch"), now));
    }
}

#[cfg(test)]
mod path_rule_tests {
    use super::*;

    #[test]
    fn each_step_of_an_order_belongs_to_one_role() {
        let p = Policy::default();
        let orders: ContextName = "orders".parse().expect("valid");
        let role = |s: &str| -> Role { s.parse().expect("valid") };
        let at = |s: &str| Pointer::parse(s).expect("valid");
        let may = |r: &str, path: &str, replaces: bool| {
            p.may_write_path(&role(r), &orders, &at(path), replaces)
        };
        assert!(may("kiosk", "/orders/K1-001", false));
        assert!(may("kiosk", "/orders/K1-001/items/0/sku", false));
        assert!(
            !may("kitchen", "/orders/K1-001", false),
            "only kiosks and POS place"
        );
        assert!(may("kitchen", "/orders/K1-001/kitchen", false));
        assert!(may("kitchen", "/orders/K1-001/kitchen/state", true));
        assert!(!may("kiosk", "/orders/K1-001/kitchen/state", true));
        assert!(!may("kiosk", "/orders/K1-001/payment", false));
        assert!(may("pos", "/orders/K1-001/payment/amount", false));
        assert!(may("pos", "/orders/K1-001/closed", false));
        assert!(!may("kitchen", "/orders/K1-001/closed", false));
        // Rewriting or deleting the order would wipe the kitchen's and the POS's steps.
        assert!(!may("kiosk", "/orders/K1-001", true));
        assert!(!may("pos", "/orders/K1-001", true));
        assert!(!may("pos", "/orders", true));
        assert!(may("pos", "/orders", false), "creating the map of orders");
        assert!(may("cloud", "/orders/K1-001", true));
        // Paths no rule covers follow the context's writers.
        assert!(may("kitchen", "/_tickets/C1", true));
        assert!(may("kitchen", "/notes", true));
        assert!(p.has_path_rules(&orders));
        assert!(!p.has_path_rules(&"menu".parse().expect("valid")));
        assert!(p
            .path_refusal(&role("kiosk"), &orders, &at("/orders/K1-001/payment"))
            .contains("/orders/*/payment is written by pos"));
    }
}
