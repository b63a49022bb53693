//! The API's settings as clap flags and `RYZE_*` variables, shared by `ryze serve` and the Lambda
//! functions: one definition, so both read the same names with the same defaults. The Lambda
//! functions have no command line and parse an empty one
//! ([`ryze_core::adapters::aws::config::from_env`]); the AWS resource names and the sealing key
//! are [`AwsArgs`] and [`MasterKeyArgs`], shared with the session hosts too.

use std::time::Duration;

use clap::{Args, Parser};
use ryze_core::adapters::aws::{AwsArgs, MasterKeyArgs};
use ryze_core::domain::RetrySchedule;
use ryze_core::outbound::TargetPolicy;
use ryze_core::service::ConnectPolicy;
use ryze_core::telemetry::LogFormat;

/// How long a connect call waits for the session host.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// How long a connect call waits for the session host's code, in seconds.
    #[arg(long, env = "RYZE_CONNECT_WAIT_SECS", default_value_t = 60, value_name = "SECS")]
    pub connect_wait_secs: u64,
}

impl ConnectArgs {
    /// The policy, polling as often as the adapters call for (their `CONNECT_POLL_INTERVAL`).
    pub fn policy(&self, poll_interval: Duration) -> ConnectPolicy {
        ConnectPolicy { wait: Duration::from_secs(self.connect_wait_secs), poll_interval }
    }
}

/// Which addresses customer URLs (webhooks, Chatwoot) may reach.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Let webhooks and Chatwoot reach loopback, private and link-local addresses (a deployment
    /// whose customers are its own services; local tests). Off, such targets are refused.
    #[arg(long, env = "RYZE_ALLOW_PRIVATE_TARGETS", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_targets: bool,
}

impl TargetArgs {
    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy { allow_private: self.allow_private_targets }
    }
}

/// Event delivery: the dispatcher's settings.
#[derive(Args, Debug, Clone)]
pub struct EventArgs {
    /// The deployment's public API URL, sent as `instanceData.baseUrl` [`ryze serve`'s default:
    /// http://<listen>].
    #[arg(long, env = "RYZE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Seconds to wait before each webhook attempt, comma-separated; after the last failed attempt
    /// a delivery is dead.
    #[arg(long, env = "RYZE_WEBHOOK_RETRY_SCHEDULE", default_value = RetrySchedule::DEFAULT)]
    pub webhook_retry_schedule: RetrySchedule,
}

/// The `api`, `connect` and `websocket` functions' configuration.
#[derive(Parser, Debug)]
pub struct FunctionArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub master_key: MasterKeyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Log format on stderr: text or json (what CloudWatch reads best).
    #[arg(long, env = "RYZE_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

/// The `dispatcher` function's configuration.
#[derive(Parser, Debug)]
pub struct DispatcherArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub master_key: MasterKeyArgs,
    #[command(flatten)]
    pub events: EventArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// The management endpoint of the WebSocket API's stage, where frames are posted; without it
    /// no frames are sent.
    #[arg(long, env = "RYZE_WEBSOCKET_ENDPOINT", value_name = "URL")]
    pub websocket_endpoint: Option<String>,
    /// Log format on stderr: text or json (what CloudWatch reads best).
    #[arg(long, env = "RYZE_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn variables<T: CommandFactory>() -> Vec<String> {
        T::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_functions_read_the_variables_the_template_sets() {
        FunctionArgs::command().debug_assert();
        DispatcherArgs::command().debug_assert();
        let resources = ryze_core::adapters::aws::AwsResources::VARIABLES;
        let mut expected: Vec<&str> = resources.to_vec();
        expected.extend([
            "RYZE_MASTER_KEY",
            "RYZE_CONNECT_WAIT_SECS",
            "RYZE_ALLOW_PRIVATE_TARGETS",
            "RYZE_LOG_FORMAT",
        ]);
        assert_eq!(variables::<FunctionArgs>(), expected);
        let mut expected: Vec<&str> = resources.to_vec();
        expected.extend([
            "RYZE_MASTER_KEY",
            "RYZE_PUBLIC_URL",
            "RYZE_WEBHOOK_RETRY_SCHEDULE",
            "RYZE_ALLOW_PRIVATE_TARGETS",
            "RYZE_WEBSOCKET_ENDPOINT",
            "RYZE_LOG_FORMAT",
        ]);
        assert_eq!(variables::<DispatcherArgs>(), expected);
    }

    #[test]
    fn the_connect_wait_defaults_to_the_contract_s_minute() {
        // Read off the definition: the tests' own environment may set the variable.
        let command = FunctionArgs::command();
        let wait = command.get_arguments().find(|arg| arg.get_id() == "connect_wait_secs").expect("the flag");
        assert_eq!(wait.get_default_values(), ["60"]);
    }
}
