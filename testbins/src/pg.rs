//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, `pg_ctl
//! start` on a unix socket in that directory (no TCP port at all), `pg_ctl stop` when dropped.
//!
//! PostgreSQL refuses to run as root, and CI runs tests as root: there, the cluster runs as
//! the unprivileged user `nobody` (through `runuser`), and its directory is handed to that
//! user. The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, installed by
//! `scripts/test.sh`); a missing installation fails the test with what to install, never
//! skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster; stopped (immediately) and deleted when dropped.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_nobody: bool,
    running: bool,
}

/// The directory of Debian's PostgreSQL binaries (the newest version installed).
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OUTPOST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: run `apt-get install -y --no-install-recommends \
             postgresql` (scripts/test.sh does), or set OUTPOST_PG_BIN to the directory of \
             initdb and pg_ctl"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

impl PgCluster {
    /// Creates and starts a cluster. Panics (with the reason) if it cannot.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("outpost-pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        let as_nobody = is_root();
        let cluster = PgCluster {
            bin,
            dir,
            as_nobody,
            running: false,
        };
        if as_nobody {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(cluster.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot hand {:?} to user nobody", cluster.dir.path());
        }
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let mut cluster = cluster;
        cluster.start_server();
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection URL for database `postgres` as user `postgres` over the unix socket
    /// (percent-encoded host, as libpq and tokio-postgres read it).
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    fn url_of(&self, database: &str) -> String {
        let host: String = self
            .socket_dir()
            .to_str()
            .expect("utf-8 path")
            .replace('/', "%2F");
        format!("postgresql://postgres@{host}/{database}")
    }

    /// A URL for another database of the cluster, created empty.
    pub fn create_database(&self, name: &str) -> String {
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url_of(name)
    }

    /// Runs one SQL command with `psql` in database `postgres`, returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_on("postgres", sql)
    }

    /// Runs one SQL command with `psql` in `database`, returns its unaligned output.
    pub fn psql_on(&self, database: &str, sql: &str) -> String {
        let mut cmd = self.command("psql", &[]);
        cmd.args([
            "-h",
            self.socket_dir().to_str().expect("utf-8 path"),
            "-U",
            "postgres",
            "-d",
            database,
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]);
        let out = self.output_of(cmd, "psql");
        String::from_utf8_lossy(&out).trim().to_string()
    }

    /// Starts the server again after [`PgCluster::stop`].
    pub fn start_server(&mut self) {
        let opts = format!(
            "-k {} -c listen_addresses='' -c max_connections=200",
            self.socket_dir().display()
        );
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-l",
                log.to_str().expect("utf-8 path"),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops the server at once (`-m immediate`: like a crash; what was committed stays).
    pub fn stop(&mut self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        self.running = false;
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }

    fn output_of(&self, mut cmd: Command, tool: &str) -> Vec<u8> {
        // pg_ctl bounds its own waits (`-t`); psql runs one statement.
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "{tool} failed ({}):\n{}\n{}\nserver log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.stdout
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let cmd = self.command(tool, args);
        self.output_of(cmd, tool);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let _ = self
                .command(
                    "pg_ctl",
                    &[
                        "-D",
                        data.to_str().unwrap_or_default(),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                )
                .output();
        }
    }
}
