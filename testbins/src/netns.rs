//! A throwaway network namespace for tests that need DNS-like names: `ip netns add`, its
//! loopback up (127.0.0.1 and ::1), and a hosts file of its own at `/etc/netns/NAME/hosts`,
//! which `ip netns exec NAME CMD` bind-mounts over `/etc/hosts` for CMD. So a name can
//! resolve to several loopback addresses there without touching the machine's resolver.
//!
//! Creating a namespace needs root (CI runs tests as root) and iproute2's `ip`
//! (`scripts/test.sh` installs it): without either, [`Netns::create`] fails the test with
//! what to do, never skips it. The namespace and its `/etc/netns` directory are deleted when
//! the guard is dropped, also when the test panics; drop it after the processes that run in
//! it (declare it before them).
//!
//! Unix sockets are files: a PostgreSQL cluster on a unix socket, or a device's control
//! socket, is reachable from inside and outside the namespace alike. TCP and UDP on the
//! namespace's loopback are not reachable from the test process, which stays outside.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// A network namespace with its loopback up and a hosts file; deleted when dropped.
pub struct Netns {
    name: String,
    etc: PathBuf,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        format!(
            "cannot run `ip` ({e}): install iproute2 (`apt-get install -y --no-install-recommends \
             iproute2`; scripts/test.sh does)"
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one of that name first), brings its
    /// loopback up and writes `hosts` (lines of `/etc/hosts`) as its hosts file. Panics with
    /// the reason if it cannot: not root, `ip` missing, no namespaces in this kernel.
    #[track_caller]
    pub fn create(name: &str, hosts: &[&str]) -> Netns {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok());
        assert_eq!(
            uid.as_deref().map(str::trim),
            Some("0"),
            "this test creates a network namespace and needs root (CI runs tests as root): \
             run it as root"
        );
        let _ = ip(&["netns", "delete", name]);
        if let Err(e) = ip(&["netns", "add", name]) {
            panic!("cannot create the network namespace {name}: {e}");
        }
        // From here on, the guard cleans up whatever fails.
        let ns = Netns {
            name: name.to_string(),
            etc: PathBuf::from("/etc/netns").join(name),
        };
        if let Err(e) = ip(&["-n", name, "link", "set", "lo", "up"]) {
            panic!("cannot bring up the loopback of {name}: {e}");
        }
        std::fs::create_dir_all(&ns.etc)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", ns.etc.display()));
        let mut text = hosts.join("\n");
        text.push('\n');
        std::fs::write(ns.etc.join("hosts"), text)
            .unwrap_or_else(|e| panic!("cannot write {}/hosts: {e}", ns.etc.display()));
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME PROGRAM`: a command to which arguments are added as usual. `ip`
    /// execs the program (it does not fork), so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `cmd` run in the namespace: the same program, arguments, environment changes and
    /// working directory.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut inside = self.command(cmd.get_program());
        inside.args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => inside.env(key, v),
                None => inside.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            inside.current_dir(dir);
        }
        inside
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!("cleanup: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}
