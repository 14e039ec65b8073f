//! Tracing set-up: `RUST_LOG` if set, else `LOG_LEVEL`; JSON in production, text on a terminal.
//!
//! In text, field values are written with their control characters escaped: a service name with
//! a newline would otherwise forge a log line, and one with ESC drive the terminal that shows the
//! log (issue #17 row 13). tracing-subscriber's own text format escapes only `&str` fields (and
//! ANSI sequences in the message), not fields recorded with `%` or `?`. JSON escapes everything.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{FormatFields, Writer, debug_fn};

/// `LOG_FORMAT`: how tracing output looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Plain text on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

/// Installs the global subscriber. Later calls (several tests in one process) are ignored.
pub fn init<W>(default_filter: &str, format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.fmt_fields(text_fields()).try_init()
    };
}

/// The text format's fields: `name=value`, space-separated, the message bare, every control
/// character escaped.
fn text_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(write_field).delimited(" ")
}

fn write_field(writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    let name = field.name();
    // Metadata of records from the `log` crate, which the default format leaves out too.
    if name.starts_with("log.") {
        return Ok(());
    }
    let mut escaped = EscapeControls(writer);
    if name == "message" {
        write!(escaped, "{value:?}")
    } else {
        write!(escaped, "{}={value:?}", name.trim_start_matches("r#"))
    }
}

/// Writes text with control characters (C0, DEL, C1) as escapes: `\n`, `\r`, `\t`, `\u{1b}`.
struct EscapeControls<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for EscapeControls<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some((at, control)) = rest.char_indices().find(|(_, c)| c.is_control()) {
            self.0.write_str(&rest[..at])?;
            match control {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = &rest[at + control.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// `spawn_blocking` that keeps the caller's span, so blocking work logs in context.
pub fn spawn_blocking_in_span<F, R>(work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text_log(emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .fmt_fields(text_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn a_newline_or_escape_in_a_field_cannot_forge_a_line_or_drive_the_terminal() {
        let service = "web\n2024-01-01T00:00:00Z ERROR forged line\x1b[2J\u{9b}31m";
        let log = text_log(|| {
            tracing::warn!(service = %service, source = ?service, name = service, "Logged.");
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(!log.chars().any(|c| c.is_control() && c != '\n'), "{log:?}");
        assert!(
            log.contains(r"service=web\n2024-01-01T00:00:00Z ERROR forged line\u{1b}[2J\u{9b}31m"),
            "{log}"
        );
        assert!(log.contains("Logged."), "{log}");
    }

    #[test]
    fn a_control_character_in_the_message_is_escaped_too() {
        let error = "bad\r\ninput";
        let log = text_log(|| tracing::error!("Request failed: {error}."));
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains(r"Request failed: bad\r\ninput."), "{log}");
    }

    #[test]
    fn plain_fields_read_as_before() {
        let log = text_log(|| tracing::info!(models = 3, path = "/health", "Models loaded."));
        assert!(
            log.contains(r#"Models loaded. models=3 path="/health""#),
            "{log}"
        );
    }
}
