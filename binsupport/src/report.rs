//! How a binary tells the user that something failed: one line on stderr.

use std::error::Error;
use std::process::ExitCode;

/// Replaces the default panic message (with its "panicked at" and backtrace hint) by one
/// line that says it is a bug. Commands report every expected failure as an error; a panic
/// left is a bug, and the user still deserves a readable message.
pub fn install_panic_hook(program: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let at = info
            .location()
            .map(|l| format!(" ({}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "{program}: internal error: {what}{at}; this is a bug, please report it with the command that was run"
        );
    }));
}

/// Prints an error with its causes on one line and returns the failure exit code.
pub fn report(program: &str, error: &(dyn Error + 'static)) -> ExitCode {
    eprintln!("{program}: error: {}", one_line(error));
    ExitCode::FAILURE
}

/// The error and its causes on one line, without a backtrace (even with RUST_BACKTRACE set),
/// skipping causes that the message before them already quotes.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    for cause in std::iter::successors(Some(error), |e| (*e).source()) {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot read menu.automerge")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_on_one_line_once() {
        let e = Outer(std::io::Error::other("No such file"));
        assert_eq!(one_line(&e), "cannot read menu.automerge: No such file");
        let quoted = Outer(std::io::Error::other("cannot read"));
        assert_eq!(one_line(&quoted), "cannot read menu.automerge");
    }
}
