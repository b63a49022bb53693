//! Logging, set up once per binary: human-readable locally, JSON where a log service reads it
//! (Lambda, ECS). `RUST_LOG` filters, `info` by default.
//!
//! `RUST_LOG` takes `target=level` directives (`info,ryze_core=debug`), not `EnvFilter`'s span and
//! field filters: those bring a regex engine into every binary, a Lambda bootstrap included.

use tracing_subscriber::filter::{LevelFilter, Targets};

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

    let configured = std::env::var("RUST_LOG").ok().filter(|value| !value.trim().is_empty());
    let parsed = configured.as_deref().map(str::parse::<Targets>);
    let filter = match &parsed {
        Some(Ok(targets)) => targets.clone(),
        _ => Targets::new().with_default(LevelFilter::INFO),
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
    if let (Ok(()), Some(Err(error))) = (installed, parsed) {
        tracing::warn!(%error, "RUST_LOG is not a list of target=level directives; logging at info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_directives_parse_as_targets() {
        let targets: Targets = "warn,ryze_core=debug".parse().unwrap();
        assert!(targets.would_enable("ryze_core::service", &Level::DEBUG));
        assert!(!targets.would_enable("hyper", &Level::INFO));
        assert!(targets.would_enable("hyper", &Level::WARN));
        assert!("ryze_core=loud".parse::<Targets>().is_err());
    }
}
