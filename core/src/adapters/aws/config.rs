//! A deployment on AWS as command-line flags and `RYZE_*` variables: the one definition of its
//! resource names ([`AwsArgs`]) and of its sealing key ([`MasterKeyArgs`]) that every binary reads
//! them through, `ryze`, `ryze-session-host` and the Lambda functions alike. A process without a
//! command line (a Lambda function) parses an empty one with [`from_env`]: the same names, the
//! same defaults, and errors that name the variable.

use std::fmt;

use clap::error::{ContextKind, ContextValue};

use super::AwsResources;
use crate::secrets::MasterKey;

/// A configuration that cannot be used, in words that name the variable to fix.
#[derive(thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

// `main` returning the error prints its Debug form: the message itself reads best there.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where `--help` lists the resources and the key (per flag: a heading of the struct would carry
/// over to the flags that follow it).
const HEADING: &str = "AWS deployment (what `ryze aws provision` prints)";

/// The names of a deployment's table, queues and bucket, as `ryze aws provision` prints them.
///
/// Each is optional to clap, so that a binary with another backend (`ryze serve` on the embedded
/// store) can carry them; [`Self::resources`] names every one that is missing.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsArgs {
    /// The DynamoDB table: accounts, instances, tokens, counters, leases, the delivery log.
    #[arg(long, env = "RYZE_TABLE", value_name = "NAME", help_heading = HEADING)]
    pub table: Option<String>,
    /// The SQS FIFO queue of commands to the session hosts.
    #[arg(long, env = "RYZE_COMMAND_QUEUE_URL", value_name = "URL", help_heading = HEADING)]
    pub command_queue_url: Option<String>,
    /// The SQS FIFO queue of events, in order per instance.
    #[arg(long, env = "RYZE_EVENT_QUEUE_URL", value_name = "URL", help_heading = HEADING)]
    pub event_queue_url: Option<String>,
    /// The SQS FIFO queue of first webhook attempts, in order per webhook.
    #[arg(long, env = "RYZE_ORDERED_DELIVERY_QUEUE_URL", value_name = "URL", help_heading = HEADING)]
    pub ordered_delivery_queue_url: Option<String>,
    /// The SQS standard queue of webhook retries (delayed sends).
    #[arg(long, env = "RYZE_DELIVERY_QUEUE_URL", value_name = "URL", help_heading = HEADING)]
    pub delivery_queue_url: Option<String>,
    /// The dead-letter queue of deliveries whose schedule ran out.
    #[arg(long, env = "RYZE_DEAD_DELIVERY_QUEUE_URL", value_name = "URL", help_heading = HEADING)]
    pub dead_delivery_queue_url: Option<String>,
    /// The S3 bucket of blobs: the sessions' credential stores.
    #[arg(long, env = "RYZE_BUCKET", value_name = "NAME", help_heading = HEADING)]
    pub bucket: Option<String>,
}

impl AwsArgs {
    /// The values in the order of [`AwsResources::VARIABLES`].
    fn values(&self) -> [&Option<String>; 7] {
        [
            &self.table,
            &self.command_queue_url,
            &self.event_queue_url,
            &self.ordered_delivery_queue_url,
            &self.delivery_queue_url,
            &self.dead_delivery_queue_url,
            &self.bucket,
        ]
    }

    /// The resources, or an error naming every variable that is missing (or empty).
    pub fn resources(&self) -> Result<AwsResources, ConfigError> {
        let values = self.values().map(|value| value.clone().filter(|value| !value.is_empty()));
        match values {
            [
                Some(table),
                Some(command_queue_url),
                Some(event_queue_url),
                Some(ordered_delivery_queue_url),
                Some(delivery_queue_url),
                Some(dead_delivery_queue_url),
                Some(bucket),
            ] => Ok(AwsResources {
                table,
                command_queue_url,
                event_queue_url,
                ordered_delivery_queue_url,
                delivery_queue_url,
                dead_delivery_queue_url,
                bucket,
            }),
            values => {
                let missing: Vec<&str> = AwsResources::VARIABLES
                    .iter()
                    .zip(&values)
                    .filter(|(_, value)| value.is_none())
                    .map(|(name, _)| *name)
                    .collect();
                Err(ConfigError(format!(
                    "missing configuration: {} (the variables `ryze aws provision` prints)",
                    missing.join(", ")
                )))
            }
        }
    }
}

/// The deployment's sealing key. Its value never shows: not in `--help` (`hide_env_values`), not
/// in a Debug print of the flags, not in a parse error (any text parses; [`Self::key`] checks it
/// and names only the variable).
#[derive(clap::Args, Clone, Default)]
pub struct MasterKeyArgs {
    /// The sealing key: 32 bytes in base64 (what `ryze aws provision` prints), or a secret text of
    /// at least 32 characters. Prefer the variable: a command line is visible to the machine's
    /// other users.
    #[arg(
        long = "master-key",
        env = MasterKey::VARIABLE,
        hide_env_values = true,
        value_name = "KEY",
        help_heading = HEADING
    )]
    master_key: Option<String>,
}

impl fmt::Debug for MasterKeyArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.is_set() { "<redacted>" } else { "<unset>" };
        f.debug_struct("MasterKeyArgs").field("master_key", &format_args!("{value}")).finish()
    }
}

impl MasterKeyArgs {
    /// Whether a key was given (an empty value is none).
    pub fn is_set(&self) -> bool {
        self.master_key.as_deref().is_some_and(|text| !text.trim().is_empty())
    }

    /// The key, or an error that names the variable (and never quotes the value).
    pub fn key(&self) -> Result<MasterKey, ConfigError> {
        let variable = MasterKey::VARIABLE;
        let text = self
            .master_key
            .as_deref()
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| ConfigError(format!("missing configuration: {variable}")))?;
        MasterKey::from_config(text).map_err(|_| {
            ConfigError(format!("{variable}: expected 32 bytes in base64, or at least 32 characters"))
        })
    }
}

impl AwsResources {
    /// Reads the `RYZE_*` resource variables through [`AwsArgs`], naming every one that is missing.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_env::<ResourcesEnv>("ryze")?.aws.resources()
    }
}

impl MasterKey {
    /// Reads the key from [`Self::VARIABLE`] through [`MasterKeyArgs`].
    pub fn from_env() -> Result<Self, ConfigError> {
        from_env::<KeyEnv>("ryze")?.master_key.key()
    }
}

/// The resource flags as a whole command, for [`from_env`].
#[derive(clap::Parser)]
struct ResourcesEnv {
    #[command(flatten)]
    aws: AwsArgs,
}

/// The key's flag as a whole command, for [`from_env`].
#[derive(clap::Parser)]
struct KeyEnv {
    #[command(flatten)]
    master_key: MasterKeyArgs,
}

/// The flags `T` from the environment alone: an empty command line named `name`, so that a process
/// without one (a Lambda function) reads the same variables with the same defaults as the binaries.
/// An invalid value is reported with its variable's name.
pub fn from_env<T: clap::Parser>(name: &str) -> Result<T, ConfigError> {
    T::try_parse_from([name]).map_err(|error| explain::<T>(&error))
}

/// A clap error as one line that starts with the variable it is about, when it is about one.
fn explain<T: clap::CommandFactory>(error: &clap::Error) -> ConfigError {
    let rendered = error.render().to_string();
    let line = rendered.lines().next().unwrap_or_default();
    let line = line.strip_prefix("error: ").unwrap_or(line).to_owned();
    let flag = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.split_whitespace().next().map(str::to_owned),
        _ => None,
    };
    let variable = flag.and_then(|flag| {
        T::command()
            .get_arguments()
            .find(|arg| arg.get_long().is_some_and(|long| flag == format!("--{long}")))
            .and_then(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
    });
    ConfigError(match variable {
        Some(variable) => format!("{variable}: {line}"),
        None => line,
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        key: MasterKeyArgs,
        #[arg(long, env = "RYZE_PROBE_SECS", default_value_t = 1)]
        secs: u64,
    }

    fn parse(args: &[&str]) -> Probe {
        Probe::try_parse_from(std::iter::once("probe").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn every_resource_variable_is_a_flag() {
        let command = Probe::command();
        let envs: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        for variable in AwsResources::VARIABLES.iter().chain([&MasterKey::VARIABLE]) {
            assert!(envs.iter().any(|env| env == variable), "{variable} is not read");
        }
        command.debug_assert();
    }

    #[test]
    fn the_resources_come_from_the_flags_in_the_variables_order() {
        let probe = parse(&[
            "--table=t",
            "--command-queue-url=c",
            "--event-queue-url=e",
            "--ordered-delivery-queue-url=o",
            "--delivery-queue-url=d",
            "--dead-delivery-queue-url=x",
            "--bucket=b",
        ]);
        let resources = probe.aws.resources().expect("complete");
        assert_eq!(
            resources.to_env_lines(),
            "RYZE_TABLE=t\nRYZE_COMMAND_QUEUE_URL=c\nRYZE_EVENT_QUEUE_URL=e\n\
             RYZE_ORDERED_DELIVERY_QUEUE_URL=o\nRYZE_DELIVERY_QUEUE_URL=d\n\
             RYZE_DEAD_DELIVERY_QUEUE_URL=x\nRYZE_BUCKET=b\n"
        );
    }

    #[test]
    fn missing_and_empty_resources_are_named() {
        // Every flag given, so that the tests' own environment plays no part.
        let probe = parse(&[
            "--table=t",
            "--command-queue-url=",
            "--event-queue-url=",
            "--ordered-delivery-queue-url=",
            "--delivery-queue-url=",
            "--dead-delivery-queue-url=",
            "--bucket=b",
        ]);
        let error = probe.aws.resources().expect_err("incomplete").to_string();
        assert!(
            error.starts_with(
                "missing configuration: RYZE_COMMAND_QUEUE_URL, RYZE_EVENT_QUEUE_URL, \
                 RYZE_ORDERED_DELIVERY_QUEUE_URL, RYZE_DELIVERY_QUEUE_URL, RYZE_DEAD_DELIVERY_QUEUE_URL"
            ),
            "{error}"
        );
    }

    #[test]
    fn the_key_never_shows() {
        let secret = "a secret text of more than thirty-two characters";
        let probe = parse(&["--master-key", secret]);
        assert!(probe.key.is_set());
        probe.key.key().expect("a valid key");
        assert!(!format!("{probe:?}").contains(secret), "{probe:?}");
        let short = parse(&["--master-key", "short-secret"]);
        let error = short.key.key().expect_err("too short").to_string();
        assert!(error.starts_with("RYZE_MASTER_KEY: "), "{error}");
        assert!(!error.contains("short-secret"), "{error}");
        let help = Probe::command().render_long_help().to_string();
        assert!(help.contains("[env: RYZE_MASTER_KEY]"), "{help}");
        let unset = parse(&["--master-key="]).key;
        assert!(!unset.is_set());
        assert_eq!(unset.key().expect_err("unset").to_string(), "missing configuration: RYZE_MASTER_KEY");
    }

    #[test]
    fn an_invalid_value_is_reported_with_its_variable() {
        let error = Probe::try_parse_from(["probe", "--secs", "soon"]).expect_err("not a number");
        let line = explain::<Probe>(&error).to_string();
        assert!(line.starts_with("RYZE_PROBE_SECS: invalid value 'soon'"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}
