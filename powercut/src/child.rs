//! A workload in a child process whose acknowledgements are lines on its stdout: an
//! acknowledgement counts once the parent has read the whole line, newline included, so a
//! line cut in half by the SIGKILL acknowledges nothing.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running workload.
pub struct Workload {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    read: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

/// What a killed (or ended) workload acknowledged.
#[derive(Debug)]
pub struct Ended {
    /// Every complete line it printed, in order.
    pub lines: Vec<String>,
    /// What it printed on stderr (its panic, if it ended on its own).
    pub stderr: String,
    /// Its exit status if it ended before the kill.
    pub ended_on_its_own: Option<ExitStatus>,
}

impl Workload {
    /// Starts `cmd` with stdout and stderr piped.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Workload> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // A line without its newline was cut by the kill: not an ack.
                    Ok(_) if !line.ends_with('\n') => break,
                    Ok(_) => {
                        line.pop();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Ok(Workload {
            child,
            lines,
            read: Vec::new(),
            stderr: Some(stderr),
        })
    }

    /// Waits until the workload printed `n` lines in all, it ended, or `timeout` passed;
    /// returns how many lines it printed so far.
    pub fn wait_lines(&mut self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while self.read.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.read.push(l),
                Err(_) => break,
            }
        }
        self.read.len()
    }

    /// Waits until the workload printed a line starting with `prefix`, it ended, or
    /// `timeout` passed; returns whether it did.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if self.read.iter().any(|l| l.starts_with(prefix)) {
            return true;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.starts_with(prefix);
                    self.read.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// SIGKILLs the workload (if it still runs), reaps it, and collects every line it
    /// printed, also those still in the pipe.
    pub fn kill(mut self) -> Ended {
        let ended_on_its_own = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader ends at end of file, now that the child is gone.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.read.push(l);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ended {
            lines: std::mem::take(&mut self.read),
            stderr,
            ended_on_its_own,
        }
    }

    /// Waits for the workload to end on its own (up to `timeout`, then kills it).
    pub fn finish(mut self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // A test that panics mid-round leaves no workload holding the mount.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
