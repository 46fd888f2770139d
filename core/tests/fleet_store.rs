//! Stores that delegate fleet documents (a cloud's sites): one copy, shared by every site
//! store over one sled database; site documents stay apart.

use outpost_core::{
    ContextRule, DocumentId, Durability, PeerInfo, Policy, Store, StoreOptions, SubscriptionFilter,
};
use serde_json::json;

fn policy() -> Policy {
    let mut p = Policy::default();
    p.contexts.insert(
        "catalog".parse().expect("valid"),
        ContextRule::new(&["pos"], &["head-office"]).fleet(),
    );
    p
}

#[test]
fn sites_share_one_copy_of_fleet_documents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new().path(tmp.path()).open().expect("db");
    let cloud = PeerInfo::parse("acme", "cloud-1", "cloud").expect("valid");
    let options = |fleet: Option<Store>| StoreOptions {
        identity: Some(cloud.clone()),
        policy: policy(),
        fleet,
        ..StoreOptions::default()
    };
    let fleet = Store::on_db(db.clone(), "fleet/", options(None)).expect("fleet");
    let paris = Store::on_db(db.clone(), "site/paris/", options(Some(fleet.clone()))).expect("p");
    let lyon = Store::on_db(db.clone(), "site/lyon/", options(Some(fleet.clone()))).expect("l");
    let mut changes = fleet.subscribe(SubscriptionFilter::all());

    let prices: DocumentId = "prices".parse().expect("valid");
    let catalog: DocumentId = "catalog".parse().expect("valid");
    let menu: DocumentId = "menu".parse().expect("valid");
    paris
        .put(&prices, "/burger", json!(950), Durability::Durable)
        .expect("a fleet write through one site");
    fleet
        .put(
            &catalog,
            "/burger",
            json!({"name": "Burger"}),
            Durability::Durable,
        )
        .expect("a fleet write as head office");
    paris
        .put(&menu, "/burger", json!(true), Durability::Durable)
        .expect("a site write");

    assert_eq!(
        lyon.get(&prices, "/burger").expect("read"),
        Some(json!(950))
    );
    assert_eq!(
        lyon.get(&catalog, "/burger/name").expect("read"),
        Some(json!("Burger"))
    );
    assert!(
        !lyon.has_document(&menu).expect("has"),
        "site documents stay apart"
    );
    assert_eq!(
        lyon.heads(&prices).expect("h"),
        paris.heads(&prices).expect("h")
    );
    // Both sites list the fleet documents; the bytes are the fleet's only.
    assert_eq!(
        paris.documents().expect("docs"),
        vec![catalog.clone(), menu.clone(), prices.clone()]
    );
    assert_eq!(
        lyon.documents().expect("docs"),
        vec![catalog.clone(), prices.clone()]
    );
    assert_eq!(
        fleet.documents().expect("docs"),
        vec![catalog.clone(), prices.clone()]
    );
    assert_eq!(
        lyon.documents_bytes().expect("bytes"),
        0,
        "no copy in a site"
    );
    assert_eq!(
        paris.documents_bytes().expect("bytes"),
        paris.document_bytes(&menu).expect("bytes")
    );
    assert!(fleet.document_bytes(&prices).expect("bytes") > 0);
    // The fleet store tells of every fleet change, whichever site wrote it.
    let first = changes.try_recv().expect("an event");
    assert_eq!(first.doc, prices);
    assert_eq!(changes.try_recv().expect("an event").doc, catalog);
    assert!(
        changes.try_recv().is_none(),
        "site documents are not the fleet's"
    );
    // Deleting a fleet document in a site (retention, erasure of a site) keeps the copy.
    assert!(!lyon.delete_document(&prices).expect("delete"));
    assert_eq!(
        paris.get(&prices, "/burger").expect("read"),
        Some(json!(950))
    );
}

#[test]
fn the_policy_marks_fleet_scope_in_its_file_form() {
    let p = Policy::default();
    for ctx in ["catalog", "prices"] {
        assert!(p.is_fleet(&ctx.parse().expect("valid")), "{ctx}");
    }
    assert!(!p.is_fleet(&"menu".parse().expect("valid")));
    assert!(!p.is_fleet(&"unknown".parse().expect("valid")));
    let toml = toml::to_string(&p).expect("serializes");
    assert!(toml.contains("scope = \"fleet\""), "{toml}");
    let back: Policy = toml::from_str(&toml).expect("parses");
    assert_eq!(back, p);
    let json: Policy = serde_json::from_value(json!({
        "contexts": {"prices": {"read": ["pos"], "write": ["head-office"], "scope": "fleet"},
                     "menu": {"read": ["pos"], "write": ["pos"]}},
        "default_rule": {"read": [], "write": []},
        "relay_roles": []
    }))
    .expect("parses");
    assert!(json.is_fleet(&"prices".parse().expect("valid")));
    assert!(!json.is_fleet(&"menu".parse().expect("valid")));
    assert!(
        serde_json::from_value::<Policy>(json!({
            "contexts": {"prices": {"read": [], "write": [], "scope": "galaxy"}},
            "default_rule": {"read": [], "write": []},
            "relay_roles": []
        }))
        .is_err(),
        "an unknown scope is an error, not a site"
    );
}
