//! Logging, set up once per binary: human-readable locally, JSON where a log service reads it
//! (Lambda, ECS). `RUST_LOG` filters, `info` by default.
//!
//! `RUST_LOG` takes `target=level` directives (`info,ryze_core=debug`), not `EnvFilter`'s span and
//! field filters: those bring a regex engine into every binary, a Lambda bootstrap included.

use tracing_subscriber::filter::{LevelFilter, ParseError, Targets};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?}: text or json")),
        }
    }
}

/// Installs the global subscriber, writing to stderr. A second call is a no-op.
pub fn init(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let (filter, rejected) = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
    if let (Ok(()), Some(error)) = (installed, rejected) {
        tracing::warn!(%error, "RUST_LOG is not a list of target=level directives; logging at info");
    }
}

/// The filter `RUST_LOG` asks for: `info` when it is unset or blank, and `info` with the parse
/// error (to be logged once logging works) when it is not `target=level` directives.
fn log_filter(rust_log: Option<&str>) -> (Targets, Option<ParseError>) {
    let default = || Targets::new().with_default(LevelFilter::INFO);
    match rust_log.map(str::trim).filter(|value| !value.is_empty()).map(str::parse::<Targets>) {
        None => (default(), None),
        Some(Ok(targets)) => (targets, None),
        Some(Err(error)) => (default(), Some(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_directives_choose_levels_per_target() {
        let (targets, rejected) = log_filter(Some("warn,ryze_core=debug"));
        assert!(rejected.is_none());
        assert!(targets.would_enable("ryze_core::service", &Level::DEBUG));
        assert!(!targets.would_enable("hyper", &Level::INFO));
        assert!(targets.would_enable("hyper", &Level::WARN));
    }

    #[test]
    fn an_unset_blank_or_unparsable_rust_log_logs_at_info() {
        for rust_log in [None, Some(""), Some("  "), Some("ryze_core=loud")] {
            let (targets, rejected) = log_filter(rust_log);
            assert!(targets.would_enable("hyper", &Level::INFO), "{rust_log:?}");
            assert!(!targets.would_enable("hyper", &Level::DEBUG), "{rust_log:?}");
            assert_eq!(rejected.is_some(), rust_log == Some("ryze_core=loud"), "{rust_log:?}");
        }
    }
}
