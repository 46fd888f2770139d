//! Logs of the node (tracing): to standard error, or to a sink the app sets (logcat on
//! Android, os_log on iOS, where standard error goes nowhere).

use crate::error::{guard, OutpostError, Result};

/// Writes outpost's logs to standard error (logcat shows them on Android), filtered by
/// `filter` in `RUST_LOG` syntax, e.g. `"info"` or `"outpost_transport=debug,info"`.
/// Only the first call in a process installs the logger; later calls return `false`.
#[uniffi::export]
pub fn enable_logging(filter: String) -> Result<bool> {
    guard("enableLogging", || {
        let filter = tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| {
            OutpostError::invalid_config(format!(
                "log filter {filter:?} is invalid ({e}); use e.g. \"info\" or \"outpost_transport=debug\""
            ))
        })?;
        Ok(tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init()
            .is_ok())
    })
}

/// The level of a log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    /// Something failed or was refused.
    Error,
    /// Something the operator should look at.
    Warn,
    /// The life of links and documents.
    Info,
    /// Details for debugging.
    Debug,
    /// Every message.
    Trace,
}

/// Where the app wants outpost's logs: e.g. `android.util.Log` or `os_log`. Called on
/// outpost's threads; keep it quick and do not call back into the node from it.
#[uniffi::export(with_foreign)]
pub trait LogSink: Send + Sync {
    /// One record: its level, its source (`outpost_transport::node`) and its text with its
    /// fields (`peer connected peer=paris-11/pos-1 (pos)`).
    fn log(&self, level: LogLevel, target: String, message: String);
}

/// Sends outpost's logs to `sink`, filtered by `filter` in `RUST_LOG` syntax (e.g.
/// `"info"`). Only the first logger of a process is installed (this or `enableLogging`);
/// later calls return `false`.
#[uniffi::export]
pub fn set_log_sink(sink: std::sync::Arc<dyn LogSink>, filter: String) -> Result<bool> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    guard("setLogSink", || {
        let filter = tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| {
            OutpostError::invalid_config(format!(
                "log filter {filter:?} is invalid ({e}); use e.g. \"info\" or \"outpost_transport=debug\""
            ))
        })?;
        Ok(tracing_subscriber::registry()
            .with(filter)
            .with(SinkLayer { sink })
            .try_init()
            .is_ok())
    })
}

struct SinkLayer {
    sink: std::sync::Arc<dyn LogSink>,
}

/// Collects an event's message and fields into one line.
#[derive(Default)]
struct Line(String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = if self.0.is_empty() {
                write!(self.0, "{value:?}")
            } else {
                write!(self.0, " {value:?}")
            };
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write;
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SinkLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => LogLevel::Error,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::DEBUG => LogLevel::Debug,
            tracing::Level::TRACE => LogLevel::Trace,
        };
        let mut line = Line::default();
        event.record(&mut line);
        // A panicking sink must not take the node's thread down.
        let sink = &self.sink;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sink.log(
                level,
                meta.target().to_string(),
                line.0.trim_start().to_string(),
            )
        }));
    }
}
