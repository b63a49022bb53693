//! `ryze-session-host --help` documents its whole configuration: every `RYZE_*` variable it reads,
//! the AWS resource names and the sealing key included, and never the key's value.

use std::process::Command;

const HOST: &str = env!("CARGO_BIN_EXE_ryze-session-host");

/// Every `RYZE_*` variable the binary reads.
const VARIABLES: [&str; 23] = [
    "RYZE_WHATSAPP_URL",
    "RYZE_WHATSAPP_WEB_VERSION",
    "RYZE_QR_BUDGET_SECS",
    "RYZE_DEAD_SOCKET_SECS",
    "RYZE_MAX_SESSIONS",
    "RYZE_PROXY_CA_FILE",
    "RYZE_HOST_ID",
    "RYZE_HEARTBEAT_SECS",
    "RYZE_LEASE_SECS",
    "RYZE_CONNECTS_PER_SECOND",
    "RYZE_SESSIONS_PER_TASK_TARGET",
    "RYZE_WORK_DIR",
    "RYZE_HEALTH_LISTEN",
    "RYZE_METRICS_SERVICE",
    "RYZE_LOG_FORMAT",
    "RYZE_TABLE",
    "RYZE_COMMAND_QUEUE_URL",
    "RYZE_EVENT_QUEUE_URL",
    "RYZE_ORDERED_DELIVERY_QUEUE_URL",
    "RYZE_DELIVERY_QUEUE_URL",
    "RYZE_DEAD_DELIVERY_QUEUE_URL",
    "RYZE_BUCKET",
    "RYZE_MASTER_KEY",
];

/// The `RYZE_*` names in a help text, sorted, each once.
fn variables_in(help: &str) -> Vec<&str> {
    let mut names: Vec<&str> = help
        .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|word| word.starts_with("RYZE_") && word.len() > "RYZE_".len())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn the_help_lists_every_variable_and_never_the_master_key() {
    let secret = "a-master-key-that-must-never-be-printed-0123456789";
    let output = Command::new(HOST)
        .arg("--help")
        .env("RYZE_MASTER_KEY", secret)
        .env("RYZE_TABLE", "shown-table")
        .output()
        .expect("ryze-session-host runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let help = String::from_utf8(output.stdout).expect("utf-8");
    let mut expected = VARIABLES;
    expected.sort_unstable();
    assert_eq!(variables_in(&help), expected, "{help}");
    assert!(!help.contains(secret), "the key's value is printed:\n{help}");
    assert!(help.contains("[env: RYZE_MASTER_KEY]"), "{help}");
    // Other values show, as clap shows them: only the key is hidden.
    assert!(help.contains("[env: RYZE_TABLE=shown-table]"), "{help}");
}

#[test]
fn a_missing_resource_is_named_before_anything_starts() {
    let output = Command::new(HOST)
        .env_clear()
        .env("RYZE_MASTER_KEY", "a-master-key-that-must-never-be-printed-0123456789")
        .env("RYZE_BUCKET", "bucket")
        .env("RYZE_WORK_DIR", std::env::temp_dir().join("ryze-help-test"))
        .output()
        .expect("ryze-session-host runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing configuration: RYZE_TABLE, RYZE_COMMAND_QUEUE_URL"), "{stderr}");
    assert!(!stderr.contains("RYZE_BUCKET"), "{stderr}");
    assert!(!stderr.contains("never-be-printed"), "{stderr}");
}
