//! `outpost-cloud backup | restore | erase`: work on the data directory of a stopped cloud
//! peer (sled lets one process hold a database).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use outpost_core::{
    BackupWriter, DocumentId, Engine, EngineConfig, Role, SiteId, Store, StoreOptions, Timestamp,
};
use outpost_transport::DeviceCert;

use super::config::{AdminConfig, CloudCommand};
use outpost_core::storage::SharedKeyWrap;

/// The namespace of a site's store in the cloud's database.
pub(crate) fn namespace(site: &SiteId) -> String {
    format!("site/{site}/")
}

/// The sites a database holds (those with a store namespace), sorted.
pub(crate) fn sites(db: &outpost_core::Database) -> Vec<SiteId> {
    let names = match db.keyspaces() {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the sites of the database");
            return Vec::new();
        }
    };
    let mut out: Vec<SiteId> = names
        .iter()
        .filter_map(|n| {
            n.strip_prefix("site/")?
                .strip_suffix("/chunks")?
                .parse()
                .ok()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn open(data: &Path, create: bool, key: Option<SharedKeyWrap>) -> Result<outpost_core::Database> {
    if !create && !data.is_dir() {
        bail!(
            "the data directory {} does not exist; check --data",
            data.display()
        );
    }
    let options = outpost_core::storage::DatabaseOptions {
        key,
        ..Default::default()
    };
    outpost_core::Database::open(data, &options).map_err(|e| match e {
        outpost_core::Error::InUse { .. } => anyhow!(
            "the data directory {} is in use (is outpost-cloud running on it?); stop it first, then run this again",
            data.display()
        ),
        e => anyhow::Error::new(e).context(format!(
            "cannot open the data directory {}",
            data.display()
        )),
    })
}

fn migrate(data: &Path, to: outpost_core::StorageEngine) -> Result<()> {
    if !data.is_dir() {
        bail!(
            "the data directory {} does not exist; check --data",
            data.display()
        );
    }
    let report = outpost_core::migrate(data, to).map_err(|e| match e {
        outpost_core::Error::InUse { .. } => anyhow!(
            "the data directory {} is in use (is outpost-cloud running on it?); stop it first, then run this again",
            data.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot migrate {}", data.display())),
    })?;
    match &report.old_files {
        None => println!("{} is on {} already; nothing to do", data.display(), report.to),
        Some(old) => println!(
            "moved {} from {} to {}: {} keyspaces, {} documents, {} entries copied and compared; the old files are in {} (delete them once the cloud works)",
            data.display(),
            report.from,
            report.to,
            report.keyspaces,
            report.documents,
            report.entries,
            old.display()
        ),
    }
    Ok(())
}

/// Runs a subcommand of `outpost-cloud`.
pub(crate) fn run(config: AdminConfig, command: CloudCommand) -> Result<()> {
    match command {
        CloudCommand::Backup { out } => backup(&config, &out),
        CloudCommand::Restore { from } => restore(&config, &from),
        CloudCommand::Erase { doc, site } => erase(&config, &doc, site.as_deref()),
        CloudCommand::Token(command) => token(&config.data, command),
        CloudCommand::WebToken(command) => web_token(&config, command),
        CloudCommand::Migrate { to } => migrate(&config.data, to),
    }
}

fn token(data: &Path, command: super::TokenCommand) -> Result<()> {
    use super::api::tokens;
    match command {
        super::TokenCommand::Issue { name, sites, write } => {
            let token = tokens::issue(data, &name, &sites, write)?;
            eprintln!(
                "issued token {name} for sites {} ({}); it is shown once, keep it secret:",
                sites.join(","),
                if write { "read and write" } else { "read only" }
            );
            println!("{token}");
        }
        super::TokenCommand::Revoke { name } => {
            if !tokens::revoke(data, &name)? {
                bail!("no token named {name}; `outpost-cloud token list` shows them");
            }
            println!("revoked token {name}");
        }
        super::TokenCommand::List => {
            for t in tokens::load(data)?.tokens {
                println!(
                    "{}\tsites={}\t{}",
                    t.name,
                    t.sites.join(","),
                    if t.write { "write" } else { "read" }
                );
            }
        }
    }
    Ok(())
}

/// `outpost-cloud web-token issue|revoke` (see `web.rs`).
fn web_token(config: &AdminConfig, command: super::WebTokenCommand) -> Result<()> {
    let parse_site = |site: &str| -> Result<SiteId> {
        site.parse()
            .map_err(|e| anyhow::anyhow!("invalid --site {site:?}: {e}"))
    };
    match command {
        super::WebTokenCommand::Issue {
            site,
            role,
            name,
            ttl,
        } => {
            let site = parse_site(&site)?;
            let role: outpost_core::Role = role
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid --role {role:?}: {e}"))?;
            if !config.policy.may_vouch(&outpost_core::Role::cloud(), &role) {
                bail!(
                    "the cloud may not vouch for web clients of role {role} (the policy's \
                     `vouch` table for role cloud); add it there, or issue the token on a device"
                );
            }
            let ttl = parse_ttl(&ttl)?;
            let book = outpost_ws::TokenBook::open(super::web::token_dir(&config.data, &site))?;
            let now = outpost_core::Timestamp::now().as_millis() / 1000;
            let (token, claims) = book.issue(&site, &role, &name, now, ttl)?;
            eprintln!(
                "issued web token {} for {name} (role {role}) at site {site}, valid {ttl} s; \
                 connect to ws://<--ws-listen>/sites/{site}?token=<it>",
                claims.id
            );
            println!("{token}");
        }
        super::WebTokenCommand::Revoke { site, id } => {
            let site = parse_site(&site)?;
            let dir = super::web::token_dir(&config.data, &site);
            if !dir.join("token.key").exists() {
                bail!(
                    "no web tokens were issued for site {site} in {}",
                    config.data.display()
                );
            }
            outpost_ws::TokenBook::open(dir)?.revoke(&id)?;
            println!("revoked web token {id} of site {site}");
        }
    }
    Ok(())
}

/// `30m`, `12h`, `7d` or seconds, in seconds.
fn parse_ttl(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid --ttl {s:?}: give e.g. 30m, 12h, 7d or seconds"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("invalid --ttl {s:?}: the unit is s, m, h or d"),
    };
    Ok(n.saturating_mul(unit))
}

fn backup(config: &AdminConfig, out: &Path) -> Result<()> {
    let data = &config.data;
    let db = open(data, false, config.data_key.clone())?;
    let ((sites, documents), bytes) = outpost_binsupport::write_atomically(out, |w| {
        // Sealed under the working copy's data key when it is encrypted.
        let mut w = BackupWriter::for_database(w, &db)?;
        let sites = sites(&db);
        let mut documents = 0;
        for site in &sites {
            let store = Store::on_db(db.clone(), &namespace(site), StoreOptions::default())?;
            documents += w.add(&store)?.documents;
        }
        // The fleet documents, held once for every site (see `fleet.rs`).
        let fleet_tree = format!("{}chunks", super::fleet::FLEET_NAMESPACE);
        if db.keyspaces()?.contains(&fleet_tree) {
            let store = Store::on_db(
                db.clone(),
                super::fleet::FLEET_NAMESPACE,
                StoreOptions::default(),
            )?;
            if !store.documents()?.is_empty() {
                documents += w.add(&store)?.documents;
            }
        }
        w.finish()?;
        anyhow::Ok((sites.len(), documents))
    })
    .with_context(|| {
        format!(
            "cannot write the backup to {}; check the directory exists, is writable and has space",
            out.display()
        )
    })?;
    println!(
        "backed up {sites} sites, {documents} documents ({bytes} bytes) to {}",
        out.display()
    );
    Ok(())
}

fn restore(config: &AdminConfig, from: &Path) -> Result<()> {
    let data = &config.data;
    if data.exists()
        && std::fs::read_dir(data)
            .with_context(|| format!("cannot read {}", data.display()))?
            .next()
            .is_some()
    {
        bail!(
            "refusing to restore into {}: the directory is not empty; restore into a new or empty directory (move the old data directory aside first)",
            data.display()
        );
    }
    let file = std::fs::File::open(from).with_context(|| {
        format!(
            "cannot open the backup {}; give the file written by `outpost-cloud backup --out FILE`",
            from.display()
        )
    })?;
    let created = !data.exists();
    let result = (|| -> Result<Vec<outpost_core::BackupSummary>> {
        let db = open(data, true, config.data_key.clone())?;
        let key = config.data_key.as_deref();
        let summaries = outpost_core::restore_stores_with_key(
            BufReader::new(file),
            key,
            |ns, _| {
                let site_ok = ns
                    .strip_prefix("site/")
                    .and_then(|s| s.strip_suffix('/'))
                    .is_some_and(|s| s.parse::<SiteId>().is_ok());
                if !site_ok && ns != super::fleet::FLEET_NAMESPACE {
                    return Err(outpost_core::BackupError::Damaged(format!(
                    "it holds the store {ns:?}, not a cloud site (a device's backup is restored with `outpost restore`)"
                )));
                }
                Ok(Store::on_db(db.clone(), ns, StoreOptions::default())?)
            },
        )?;
        db.sync()?;
        Ok(summaries)
    })();
    match result {
        Ok(summaries) => {
            let documents: u64 = summaries.iter().map(|s| s.documents).sum();
            let sites = summaries
                .iter()
                .filter(|s| s.namespace != super::fleet::FLEET_NAMESPACE)
                .count();
            println!(
                "restored {sites} sites, {documents} documents into {}; start outpost-cloud on it: devices send it what was written since the backup",
                data.display()
            );
            Ok(())
        }
        Err(e) => {
            // Leave nothing half restored.
            if let Ok(entries) = std::fs::read_dir(data) {
                for entry in entries.flatten() {
                    let p = entry.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
            if created {
                let _ = std::fs::remove_dir(data);
            }
            Err(e.context(format!(
                "cannot restore {} into {}",
                from.display(),
                data.display()
            )))
        }
    }
}

/// What `erase` prints for one site.
pub(crate) fn erased_line(site: &SiteId, doc: &DocumentId, held: bool, running: bool) -> String {
    format!(
        "{site}: {doc} {}; devices of the site delete it {}",
        if held {
            "erased"
        } else {
            "was not held here; erased for the devices"
        },
        if running {
            "now if connected, else when they next connect"
        } else {
            "when they next sync (start outpost-cloud)"
        }
    )
}

fn erase(config: &AdminConfig, doc: &str, only: Option<&str>) -> Result<()> {
    // A running cloud holds the data directory: ask it.
    let request = super::control::AdminRequest::Erase {
        doc: doc.to_string(),
        site: only.map(str::to_string),
    };
    match super::control::request(&config.data, &request)? {
        Some(super::control::AdminReply::Ok(lines)) => {
            for line in lines {
                println!("{line}");
            }
            return Ok(());
        }
        Some(super::control::AdminReply::Error(e)) => {
            bail!("the running cloud could not erase {doc}: {e}")
        }
        None => {}
    }
    let doc: DocumentId = doc.parse()?;
    let need = |p: &Option<PathBuf>, flag: &str| {
        p.clone().ok_or_else(|| {
            anyhow!("erase signs its entry in the erasure list: pass --{flag} (the cloud's own, as when serving)")
        })
    };
    let (ca, cert, key) = (
        need(&config.ca, "ca")?,
        need(&config.cert, "cert")?,
        need(&config.key, "key")?,
    );
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let cert = DeviceCert::from_pem(&read(&cert)?, &read(&key)?, &read(&ca)?)
        .context("the cloud certificate, key and CA do not form a usable identity")?;
    let local = cert.info().clone();
    if local.role != Role::cloud() {
        bail!(
            "the certificate is for {local}, not a cloud peer; pass the cloud's --cert and --key"
        );
    }
    let signer = Arc::new(
        outpost_transport::DeviceSigner::new(&cert)
            .context("the cloud certificate's key cannot sign changes")?,
    );
    let db = open(&config.data, false, config.data_key.clone())?;
    let sites: Vec<SiteId> = match only {
        Some(s) => vec![s.parse()?],
        None => sites(&db),
    };
    if sites.is_empty() {
        bail!(
            "the data directory {} holds no site; nothing to erase",
            config.data.display()
        );
    }
    let now = Timestamp::now();
    for site in sites {
        let store = Store::on_db(
            db.clone(),
            &namespace(&site),
            StoreOptions {
                identity: Some(local.clone()),
                policy: config.policy.clone(),
                signer: Some(signer.clone()),
                ..StoreOptions::default()
            },
        )?;
        let mut engine = Engine::new(
            store,
            EngineConfig::new(local.clone(), config.policy.clone()),
        );
        let held = engine.erase(&doc, now)?;
        println!("{}", erased_line(&site, &doc, held, false));
    }
    db.sync()?;
    Ok(())
}
