//! ECS task scale-in protection for a session host.
//!
//! While a host holds sessions, it keeps its ECS task's scale-in protection on through the ECS
//! container agent's endpoint (`PUT $ECS_AGENT_URI/task-protection/v1/state`), so neither a
//! scale-in of the service nor a deployment stops a task with live WhatsApp sockets: ECS only picks
//! unprotected tasks to stop, and a deployment waits for the old tasks' protection to go. Once the
//! host is drained it turns protection off, and the task is again one ECS may stop.
//!
//! - [`TaskProtection`]: the agent's endpoint, or nothing outside ECS (no `ECS_AGENT_URI`), where
//!   every call is a successful no-op.
//! - [`keep`]: the driver that follows the host's count of sessions. Protection goes on with an
//!   expiry ([`ProtectionConfig::expires_in`], so a host that dies or hangs does not stay protected
//!   for ever) and is renewed well before it lapses; it goes off once the host has held no session
//!   for [`ProtectionConfig::release_after`] (a session ending just before the next one starts does
//!   not flap it), and at once when the host is stopping and has drained. Failed calls are logged
//!   and retried with backoff; nothing here panics or holds up the host.
//!
//! The agent calls ECS's `UpdateTaskProtection` with the task role's credentials, so the task role
//! needs `ecs:UpdateTaskProtection` on the task (see `TaskRole` in `template.yaml`). Protection
//! only holds for tasks of a service: a standalone task gets a `TASK_NOT_VALID` failure.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The variable the ECS agent sets in every container of a task (Fargate platform 1.4.0 and up).
pub const AGENT_URI_VAR: &str = "ECS_AGENT_URI";
/// The bound of one call to the agent when the caller sets none. The agent's own call to ECS is
/// bounded at a few seconds.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest protection ECS grants in one call: 48 hours.
pub const MAX_EXPIRES_IN_MINUTES: u32 = 2880;
/// The most body bytes read from an answer of the agent: it answers a few hundred.
const BODY_LIMIT: usize = 16 * 1024;
/// The most characters of an agent's error message kept in an error.
const MESSAGE_LIMIT: usize = 256;

/// Why a call to the agent did not set the protection asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectionError {
    #[error("invalid ECS_AGENT_URI: {0}")]
    InvalidAgentUri(&'static str),
    #[error("ExpiresInMinutes {0} outside 1..=2880")]
    InvalidExpiry(u32),
    #[error("no answer from the ECS agent within {0:?}")]
    Timeout(Duration),
    /// The agent could not be reached, or the connection broke.
    #[error("ECS agent request failed: {0}")]
    Http(String),
    /// The agent could not make the call (`{"error": {...}}`): no task role credentials, ECS
    /// throttling or denying the call, a request it rejected.
    #[error("ECS agent answered HTTP {status} {code}: {message}")]
    Agent { status: u16, code: String, message: String },
    /// ECS made the call and refused it for this task (`{"failure": {...}}`, HTTP 200).
    #[error("ECS refused task protection: {reason}{}", in_parentheses(.detail))]
    Failure { reason: String, detail: Option<String> },
    /// An answer with none of `protection`, `failure`, `error`, or not JSON, or with the other
    /// state than asked for.
    #[error("unexpected answer from the ECS agent (HTTP {status}): {what}")]
    Unexpected { status: u16, what: &'static str },
}

fn in_parentheses(detail: &Option<String>) -> String {
    detail.as_deref().map(|detail| format!(" ({detail})")).unwrap_or_default()
}

/// The task's protection as the agent reported it after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionState {
    pub enabled: bool,
    /// When the protection lapses, as ECS wrote it (RFC 3339); none once off.
    pub expiration_date: Option<String>,
    pub task_arn: Option<String>,
}

/// The ECS agent's task-protection endpoint, or nothing outside ECS. Cheap to clone.
#[derive(Clone)]
pub struct TaskProtection {
    agent: Option<Arc<HttpAgent>>,
    timeout: Duration,
    /// Whether the no-op without an agent has been logged yet (once per process is enough).
    noted: Arc<AtomicBool>,
}

struct HttpAgent {
    client: Client<HttpConnector, Full<Bytes>>,
    state_uri: Uri,
}

impl fmt::Debug for TaskProtection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskProtection")
            .field("agent", &self.agent.as_ref().map(|agent| &agent.state_uri))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl TaskProtection {
    /// On the agent at `agent_uri` (the value of `ECS_AGENT_URI`, e.g.
    /// `http://169.254.170.2/api/<id>`), or a no-op with `None`.
    pub fn new(agent_uri: Option<&str>) -> Result<Self, ProtectionError> {
        let agent = match agent_uri {
            None => None,
            Some(uri) => Some(Arc::new(HttpAgent::new(uri)?)),
        };
        Ok(Self { agent, timeout: DEFAULT_CALL_TIMEOUT, noted: Arc::new(AtomicBool::new(false)) })
    }

    /// On the agent named by `ECS_AGENT_URI`; a no-op when it is unset or empty (not on ECS).
    pub fn from_env() -> Result<Self, ProtectionError> {
        let uri = std::env::var(AGENT_URI_VAR).ok().filter(|uri| !uri.trim().is_empty());
        Self::new(uri.as_deref())
    }

    /// The no-op: every call succeeds and does nothing.
    pub fn disabled() -> Self {
        Self { agent: None, timeout: DEFAULT_CALL_TIMEOUT, noted: Arc::new(AtomicBool::new(false)) }
    }

    /// This protection with each call bounded by `timeout` instead of [`DEFAULT_CALL_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether calls reach an agent (false outside ECS).
    pub fn has_agent(&self) -> bool {
        self.agent.is_some()
    }

    /// Turns protection on for `expires_in_minutes` (1..=2880) from now, replacing any earlier
    /// expiry. `Ok(None)` without an agent.
    pub async fn enable(&self, expires_in_minutes: u32) -> Result<Option<ProtectionState>, ProtectionError> {
        if !(1..=MAX_EXPIRES_IN_MINUTES).contains(&expires_in_minutes) {
            return Err(ProtectionError::InvalidExpiry(expires_in_minutes));
        }
        self.put(StateRequest { protection_enabled: true, expires_in_minutes: Some(expires_in_minutes) })
            .await
    }

    /// Turns protection off. `Ok(None)` without an agent.
    pub async fn disable(&self) -> Result<Option<ProtectionState>, ProtectionError> {
        self.put(StateRequest { protection_enabled: false, expires_in_minutes: None }).await
    }

    async fn put(&self, request: StateRequest) -> Result<Option<ProtectionState>, ProtectionError> {
        let Some(agent) = &self.agent else {
            if !self.noted.swap(true, Ordering::Relaxed) {
                tracing::debug!("no ECS_AGENT_URI (not on ECS): task scale-in protection calls are no-ops");
            }
            return Ok(None);
        };
        agent.put(&request, self.timeout).await.map(Some)
    }
}

impl HttpAgent {
    fn new(agent_uri: &str) -> Result<Self, ProtectionError> {
        let base = agent_uri.trim().trim_end_matches('/');
        let state_uri: Uri = format!("{base}/task-protection/v1/state")
            .parse()
            .map_err(|_| ProtectionError::InvalidAgentUri("not a URI"))?;
        // The agent listens on plain HTTP on a link-local address; the connector speaks only that.
        if state_uri.scheme_str() != Some("http") {
            return Err(ProtectionError::InvalidAgentUri("not an http:// URI"));
        }
        if state_uri.authority().is_none() {
            return Err(ProtectionError::InvalidAgentUri("no host"));
        }
        // No idle connections kept: calls are minutes apart, and a kept connection the agent has
        // closed in the meantime would only fail the next call.
        let client =
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(HttpConnector::new());
        Ok(Self { client, state_uri })
    }

    async fn put(
        &self,
        request: &StateRequest,
        timeout: Duration,
    ) -> Result<ProtectionState, ProtectionError> {
        let body = serde_json::to_vec(request).map_err(|error| ProtectionError::Http(error.to_string()))?;
        let http_request = Request::builder()
            .method(Method::PUT)
            .uri(self.state_uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| ProtectionError::Http(error.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(http_request)
                .await
                .map_err(|error| ProtectionError::Http(chain(&error)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), BODY_LIMIT)
                .collect()
                .await
                .map_err(|error| ProtectionError::Http(error.to_string()))?
                .to_bytes();
            Ok::<_, ProtectionError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ProtectionError::Timeout(timeout))??;
        interpret(status, &body, request.protection_enabled)
    }
}

/// An error and its sources, one line: hyper's own message alone says little ("client error").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The body of `PUT /task-protection/v1/state`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StateRequest {
    protection_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in_minutes: Option<u32>,
}

/// The agent's answer: exactly one of the three on a well-formed answer. `protection` and
/// `failure` are ECS's `ProtectedTask` and `Failure` as the agent marshals them (Go field names).
#[derive(Debug, Deserialize)]
struct AgentAnswer {
    protection: Option<AgentProtection>,
    failure: Option<AgentFailure>,
    error: Option<AgentError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentProtection {
    expiration_date: Option<String>,
    protection_enabled: Option<bool>,
    task_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentFailure {
    reason: Option<String>,
    detail: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentError {
    code: Option<String>,
    message: Option<String>,
}

/// What an answer of the agent means. The agent answers ECS's refusals (`failure`) with HTTP 200,
/// so the status alone does not say the call worked.
fn interpret(status: u16, body: &[u8], asked: bool) -> Result<ProtectionState, ProtectionError> {
    let Ok(answer) = serde_json::from_slice::<AgentAnswer>(body) else {
        return Err(ProtectionError::Unexpected { status, what: "not a JSON object" });
    };
    if let Some(error) = answer.error {
        return Err(ProtectionError::Agent {
            status,
            code: clip(error.code.unwrap_or_default()),
            message: clip(error.message.unwrap_or_default()),
        });
    }
    if let Some(failure) = answer.failure {
        return Err(ProtectionError::Failure {
            reason: clip(failure.reason.unwrap_or_else(|| "unknown".to_owned())),
            detail: failure.detail.map(clip),
        });
    }
    match answer.protection {
        Some(protection) if (200..300).contains(&status) => {
            let enabled = protection.protection_enabled.unwrap_or(asked);
            if enabled != asked {
                return Err(ProtectionError::Unexpected { status, what: "protection in the other state" });
            }
            Ok(ProtectionState {
                enabled,
                expiration_date: protection.expiration_date,
                task_arn: protection.task_arn,
            })
        }
        Some(_) => Err(ProtectionError::Unexpected { status, what: "protection with an error status" }),
        None => Err(ProtectionError::Unexpected { status, what: "no protection, failure or error" }),
    }
}

fn clip(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MESSAGE_LIMIT) {
        text.truncate(at);
        text.push('…');
    }
    text
}

/// How [`keep`] paces its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectionConfig {
    /// How long each "on" protects the task (`ExpiresInMinutes`): rounded up to whole minutes,
    /// within 1 minute..=48 hours. If the host dies or hangs, protection lapses after this.
    /// Default 60 minutes.
    pub expires_in: Duration,
    /// How long after a successful "on" it is sent again to push the expiry out. Must be below
    /// `expires_in` (otherwise half of it is used) and leave room for retries. Default 30 minutes.
    pub renew_every: Duration,
    /// How long the host must hold no session before protection goes off. Default 10 seconds.
    pub release_after: Duration,
    /// The wait after a failed call; it doubles with each failure in a row. Default 1 second.
    pub retry_initial: Duration,
    /// The longest wait between retries. Default 60 seconds.
    pub retry_max: Duration,
    /// Once stopping and drained, how many calls to turn protection off are made before giving
    /// up (the task is going away anyway). At least 1. Default 3.
    pub final_attempts: u32,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        Self {
            expires_in: Duration::from_secs(60 * 60),
            renew_every: Duration::from_secs(30 * 60),
            release_after: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            final_attempts: 3,
        }
    }
}

impl ProtectionConfig {
    /// The defaults with protection for `expires_in`, renewed at half of it.
    pub fn with_expiry(expires_in: Duration) -> Self {
        let config = Self { expires_in, renew_every: Duration::ZERO, ..Self::default() };
        config.normalized()
    }

    /// `ExpiresInMinutes` of each "on".
    pub fn expires_in_minutes(&self) -> u32 {
        let minutes = self.expires_in.as_secs().div_ceil(60);
        u32::try_from(minutes).unwrap_or(u32::MAX).clamp(1, MAX_EXPIRES_IN_MINUTES)
    }

    /// The configuration [`keep`] runs with: the expiry in whole minutes within the API's range,
    /// a renewal before it, retries that wait at least a millisecond, at least one final attempt.
    pub fn normalized(self) -> Self {
        let expires_in = Duration::from_secs(u64::from(self.expires_in_minutes()) * 60);
        let renew_every = if self.renew_every.is_zero() || self.renew_every >= expires_in {
            expires_in / 2
        } else {
            self.renew_every
        };
        let retry_initial = self.retry_initial.max(Duration::from_millis(1));
        Self {
            expires_in,
            renew_every,
            release_after: self.release_after,
            retry_initial,
            retry_max: self.retry_max.max(retry_initial),
            final_attempts: self.final_attempts.max(1),
        }
    }

    /// The wait after the `failures`-th failure in a row (1-based).
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.retry_initial.saturating_mul(1 << doublings).min(self.retry_max)
    }
}

/// Keeps the task's scale-in protection in step with `held`, the number of sessions the host
/// holds, until `stop` is cancelled and `held` is 0; then turns protection off and returns.
///
/// `held` dropping its sender counts as 0 sessions from then on (the host is gone). Run it in its
/// own task; it never panics and waits for nothing but its own calls, each bounded by the
/// protection's timeout. A call that fails is logged and retried with backoff. Once stopping and
/// drained it turns protection off at once (no [`ProtectionConfig::release_after`]), and gives up
/// after [`ProtectionConfig::final_attempts`] failed tries.
pub async fn keep(
    protection: TaskProtection,
    config: ProtectionConfig,
    held: watch::Receiver<usize>,
    stop: CancellationToken,
) {
    drive(&protection, config, held, stop).await;
}

/// The calls the driver makes: the agent, or a fake in the tests.
trait Agent: Send + Sync {
    fn set(
        &self,
        enable: bool,
        expires_in_minutes: u32,
    ) -> impl Future<Output = Result<Option<ProtectionState>, ProtectionError>> + Send;
}

impl Agent for TaskProtection {
    async fn set(
        &self,
        enable: bool,
        expires_in_minutes: u32,
    ) -> Result<Option<ProtectionState>, ProtectionError> {
        if enable { self.enable(expires_in_minutes).await } else { self.disable().await }
    }
}

/// What the driver believes the task's protection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Off: a new task starts unprotected, and a successful "off" leaves it so.
    Off,
    /// On after a successful call, due for renewal at `renew_at`.
    On { renew_at: Instant },
    /// The last call failed: it may be either.
    Unknown,
}

/// The driver's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Set protection to `enable` once `at` has come.
    Call {
        enable: bool,
        at: Instant,
    },
    /// Nothing to do until the count of sessions or `stop` changes.
    Idle,
    Return,
}

fn plan(
    known: Known,
    held: usize,
    stopping: bool,
    zero_since: Instant,
    now: Instant,
    config: &ProtectionConfig,
) -> Plan {
    if held > 0 {
        let at = match known {
            Known::On { renew_at } => renew_at,
            Known::Off | Known::Unknown => now,
        };
        return Plan::Call { enable: true, at };
    }
    match known {
        Known::Off if stopping => Plan::Return,
        Known::Off => Plan::Idle,
        Known::On { .. } | Known::Unknown => {
            let at = if stopping { now } else { zero_since + config.release_after };
            Plan::Call { enable: false, at }
        }
    }
}

async fn drive<A: Agent>(
    agent: &A,
    config: ProtectionConfig,
    mut held: watch::Receiver<usize>,
    stop: CancellationToken,
) {
    let config = config.normalized();
    let minutes = config.expires_in_minutes();
    let mut known = Known::Off;
    // Whether `held`'s sender is gone: the host has ended, and holds nothing.
    let mut closed = false;
    let mut zero_since = Instant::now();
    let mut was_zero = false;
    let mut failures = 0u32;
    let mut retry_at: Option<Instant> = None;
    let mut final_failures = 0u32;
    loop {
        let count = if closed { 0 } else { *held.borrow_and_update() };
        let stopping = stop.is_cancelled();
        let now = Instant::now();
        if count == 0 && !was_zero {
            zero_since = now;
        }
        was_zero = count == 0;
        let at = match plan(known, count, stopping, zero_since, now, &config) {
            Plan::Return => return,
            Plan::Idle => None,
            Plan::Call { enable, at } => {
                let at = retry_at.map_or(at, |retry| retry.max(at));
                if at <= now {
                    let sent = Instant::now();
                    match agent.set(enable, minutes).await {
                        Ok(answer) => {
                            log_success(known, enable, minutes, answer.as_ref());
                            known = if enable {
                                Known::On { renew_at: sent + config.renew_every }
                            } else {
                                Known::Off
                            };
                            failures = 0;
                            retry_at = None;
                        }
                        Err(error) => {
                            failures = failures.saturating_add(1);
                            let wait = config.backoff(failures);
                            known = Known::Unknown;
                            retry_at = Some(Instant::now() + wait);
                            if !enable && stopping {
                                final_failures += 1;
                                if final_failures >= config.final_attempts {
                                    tracing::warn!(%error, attempts = final_failures,
                                        "task scale-in protection not turned off while stopping; giving up");
                                    return;
                                }
                            }
                            tracing::warn!(%error, enable, attempt = failures, retry_in = ?wait,
                                "task scale-in protection call failed; retrying");
                        }
                    }
                    continue;
                }
                Some(at)
            }
        };
        let sleep = async {
            match at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = held.changed(), if !closed => {
                if changed.is_err() {
                    closed = true;
                }
            }
            () = stop.cancelled(), if !stopping => {}
            () = sleep => {}
        }
    }
}

fn log_success(before: Known, enable: bool, minutes: u32, answer: Option<&ProtectionState>) {
    let Some(state) = answer else {
        return; // no agent: TaskProtection has said so once
    };
    let expires = state.expiration_date.as_deref().unwrap_or("");
    match (enable, before) {
        (true, Known::On { .. }) => {
            tracing::debug!(expires_in_minutes = minutes, expires, "task scale-in protection renewed");
        }
        (true, _) => tracing::info!(expires_in_minutes = minutes, expires, "task scale-in protection on"),
        (false, _) => tracing::info!("task scale-in protection off"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    /// A fake agent: records each call with the paused clock's time since the test started, and
    /// fails the first `fail` calls.
    struct Fake {
        start: Instant,
        calls: Mutex<Vec<(Duration, bool, u32)>>,
        fail: AtomicUsize,
    }

    impl Fake {
        fn new(fail: usize) -> Arc<Self> {
            Arc::new(Self {
                start: Instant::now(),
                calls: Mutex::new(Vec::new()),
                fail: AtomicUsize::new(fail),
            })
        }

        fn calls(&self) -> Vec<(Duration, bool)> {
            self.calls.lock().unwrap().iter().map(|&(at, enable, _)| (at, enable)).collect()
        }
    }

    impl Agent for Arc<Fake> {
        async fn set(&self, enable: bool, minutes: u32) -> Result<Option<ProtectionState>, ProtectionError> {
            self.calls.lock().unwrap().push((self.start.elapsed(), enable, minutes));
            let failing =
                self.fail.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
            if failing {
                return Err(ProtectionError::Http("connection refused".into()));
            }
            Ok(Some(ProtectionState { enabled: enable, expiration_date: None, task_arn: None }))
        }
    }

    struct Run {
        fake: Arc<Fake>,
        held: watch::Sender<usize>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(fake: Arc<Fake>, config: ProtectionConfig) -> Run {
        let (held, receiver) = watch::channel(0);
        let stop = CancellationToken::new();
        let agent = fake.clone();
        let token = stop.clone();
        let task = tokio::spawn(async move { drive(&agent, config, receiver, token).await });
        Run { fake, held, stop, task }
    }

    async fn at(run: &Run, offset: Duration) {
        tokio::time::sleep_until(run.fake.start + offset).await;
    }

    #[tokio::test(start_paused = true)]
    async fn on_with_sessions_renewed_at_half_the_expiry_off_after_release() {
        let run = start(Fake::new(0), ProtectionConfig::default());
        at(&run, MIN).await;
        assert!(run.fake.calls().is_empty(), "no sessions, no call");

        run.held.send_replace(2);
        at(&run, 2 * MIN + 100 * MIN).await; // 102 min: on at 1, renewed at 31, 61, 91
        let calls = run.fake.calls();
        let minutes: Vec<u32> = run.fake.calls.lock().unwrap().iter().map(|c| c.2).collect();
        assert_eq!(
            calls,
            vec![(MIN, true), (31 * MIN, true), (61 * MIN, true), (91 * MIN, true)],
            "on when sessions appear, then every 30 minutes"
        );
        assert!(minutes.iter().all(|&m| m == 60), "ExpiresInMinutes 60: {minutes:?}");

        run.held.send_replace(0);
        at(&run, 102 * MIN + Duration::from_secs(9)).await;
        assert_eq!(run.fake.calls().len(), 4, "not off before release_after");
        at(&run, 102 * MIN + Duration::from_secs(11)).await;
        assert_eq!(run.fake.calls()[4], (102 * MIN + Duration::from_secs(10), false));

        run.stop.cancel();
        run.task.await.unwrap();
        assert_eq!(run.fake.calls().len(), 5, "already off: nothing more when stopping");
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_gap_between_sessions_does_not_flap() {
        let run = start(Fake::new(0), ProtectionConfig::default());
        run.held.send_replace(1);
        at(&run, MIN).await;
        run.held.send_replace(0);
        at(&run, MIN + Duration::from_secs(5)).await;
        run.held.send_replace(1);
        at(&run, 2 * MIN).await;
        assert_eq!(run.fake.calls(), vec![(Duration::ZERO, true)], "still on, no off and no extra on");

        run.held.send_replace(0);
        at(&run, 3 * MIN).await;
        assert_eq!(run.fake.calls()[1], (2 * MIN + Duration::from_secs(10), false));
        run.stop.cancel();
        run.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_with_doubling_backoff_up_to_the_cap() {
        let config = ProtectionConfig { retry_max: Duration::from_secs(5), ..ProtectionConfig::default() };
        let run = start(Fake::new(5), config);
        run.held.send_replace(1);
        at(&run, MIN).await;
        let s = Duration::from_secs;
        // Fails at 0, 1, 3, 7, 12 (waits 1, 2, 4, 5, 5), succeeds at 17.
        assert_eq!(
            run.fake.calls(),
            vec![(s(0), true), (s(1), true), (s(3), true), (s(7), true), (s(12), true), (s(17), true)]
        );
        // Renewal counts from the success, and backoff starts over after it.
        at(&run, s(17) + 30 * MIN + s(1)).await;
        assert_eq!(run.fake.calls().len(), 7);
        assert_eq!(run.fake.calls()[6], (s(17) + 30 * MIN, true));
        run.held.send_replace(0);
        run.stop.cancel();
        run.task.await.unwrap();
        assert_eq!(run.fake.calls().last(), Some(&(s(17) + 30 * MIN + s(1), false)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_renewal_is_retried_and_drained_hosts_turn_it_off() {
        let run = start(Fake::new(0), ProtectionConfig::default());
        run.held.send_replace(1);
        at(&run, MIN).await;
        run.fake.fail.store(1, Ordering::Relaxed);
        at(&run, 31 * MIN).await;
        let s = Duration::from_secs;
        assert_eq!(run.fake.calls(), vec![(s(0), true), (30 * MIN, true), (30 * MIN + s(1), true)]);
        // Sessions gone while the state is unknown: off after release_after.
        run.held.send_replace(0);
        at(&run, 32 * MIN).await;
        assert_eq!(run.fake.calls()[3], (31 * MIN + s(10), false));
        run.stop.cancel();
        run.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_keeps_protection_until_drained_then_turns_it_off_at_once() {
        let run = start(Fake::new(0), ProtectionConfig::default());
        run.held.send_replace(3);
        at(&run, MIN).await;
        run.stop.cancel();
        at(&run, 2 * MIN).await;
        assert!(!run.task.is_finished(), "sessions still held: the driver goes on");
        assert_eq!(run.fake.calls(), vec![(Duration::ZERO, true)]);

        run.held.send_replace(0);
        run.task.await.unwrap();
        assert_eq!(run.fake.calls(), vec![(Duration::ZERO, true), (2 * MIN, false)], "no release_after wait");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_sender_counts_as_drained() {
        let Run { fake, held, stop, task } = start(Fake::new(0), ProtectionConfig::default());
        held.send_replace(1);
        tokio::time::sleep_until(fake.start + MIN).await;
        stop.cancel();
        drop(held);
        task.await.unwrap();
        assert_eq!(fake.calls(), vec![(Duration::ZERO, true), (MIN, false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_gives_up_turning_off_after_the_final_attempts() {
        let run = start(Fake::new(0), ProtectionConfig::default());
        run.held.send_replace(1);
        at(&run, MIN).await;
        run.fake.fail.store(usize::MAX, Ordering::Relaxed);
        run.held.send_replace(0);
        run.stop.cancel();
        tokio::time::timeout(MIN, run.task).await.expect("returns").unwrap();
        let s = Duration::from_secs;
        assert_eq!(
            run.fake.calls(),
            vec![(s(0), true), (MIN, false), (MIN + s(1), false), (MIN + s(3), false)],
            "three tries, then the driver returns"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_agent_the_driver_runs_and_returns() {
        let protection = TaskProtection::new(None).unwrap();
        assert!(!protection.has_agent());
        assert_eq!(protection.enable(60).await, Ok(None));
        assert_eq!(protection.disable().await, Ok(None));
        let (held, receiver) = watch::channel(1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(protection, ProtectionConfig::default(), receiver, stop.clone()));
        tokio::time::sleep(2 * MIN).await;
        held.send_replace(0);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task).await.expect("returns").unwrap();
    }

    #[test]
    fn config_defaults_and_normalization() {
        let config = ProtectionConfig::default();
        assert_eq!(config.expires_in_minutes(), 60);
        assert_eq!(config.normalized(), config);
        assert_eq!(config.renew_every, config.expires_in / 2);

        let odd = ProtectionConfig {
            expires_in: Duration::from_secs(90),
            renew_every: Duration::from_secs(600),
            retry_initial: Duration::ZERO,
            retry_max: Duration::ZERO,
            final_attempts: 0,
            ..config
        }
        .normalized();
        assert_eq!(odd.expires_in, 2 * MIN, "rounded up to whole minutes");
        assert_eq!(odd.renew_every, MIN, "a renewal after the expiry becomes half of it");
        assert_eq!(odd.retry_initial, Duration::from_millis(1));
        assert_eq!(odd.retry_max, Duration::from_millis(1));
        assert_eq!(odd.final_attempts, 1);

        assert_eq!(ProtectionConfig { expires_in: Duration::ZERO, ..config }.expires_in_minutes(), 1);
        let long = ProtectionConfig { expires_in: Duration::from_secs(100 * 3600), ..config };
        assert_eq!(long.expires_in_minutes(), MAX_EXPIRES_IN_MINUTES);
        assert_eq!(ProtectionConfig::with_expiry(10 * MIN).renew_every, 5 * MIN);
        assert_eq!(config.backoff(1), Duration::from_secs(1));
        assert_eq!(config.backoff(4), Duration::from_secs(8));
        assert_eq!(config.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn request_bodies_are_the_documented_ones() {
        let on = StateRequest { protection_enabled: true, expires_in_minutes: Some(60) };
        assert_eq!(
            serde_json::to_string(&on).unwrap(),
            r#"{"ProtectionEnabled":true,"ExpiresInMinutes":60}"#
        );
        let off = StateRequest { protection_enabled: false, expires_in_minutes: None };
        assert_eq!(serde_json::to_string(&off).unwrap(), r#"{"ProtectionEnabled":false}"#);
    }

    #[test]
    fn answers_of_the_agent() {
        let ok = br#"{"protection":{"ExpirationDate":"2023-12-20T21:57:44.837Z","ProtectionEnabled":true,
            "TaskArn":"arn:aws:ecs:us-west-2:111122223333:task/cluster/abc"},"requestID":"r-1"}"#;
        assert_eq!(
            interpret(200, ok, true),
            Ok(ProtectionState {
                enabled: true,
                expiration_date: Some("2023-12-20T21:57:44.837Z".into()),
                task_arn: Some("arn:aws:ecs:us-west-2:111122223333:task/cluster/abc".into()),
            })
        );
        let off = br#"{"protection":{"ExpirationDate":null,"ProtectionEnabled":false,"TaskArn":"arn:x"}}"#;
        assert_eq!(interpret(200, off, false).map(|s| s.enabled), Ok(false));
        assert!(matches!(interpret(200, off, true), Err(ProtectionError::Unexpected { .. })));

        let failure =
            br#"{"failure":{"Arn":"arn:x","Detail":null,"Reason":"TASK_NOT_VALID"},"requestID":"r"}"#;
        assert_eq!(
            interpret(200, failure, true),
            Err(ProtectionError::Failure { reason: "TASK_NOT_VALID".into(), detail: None })
        );
        let error = br#"{"error":{"Arn":"arn:x","Code":"AccessDeniedException",
            "Message":"Invalid Request: no task IAM role credentials available for task"}}"#;
        assert_eq!(
            interpret(403, error, true),
            Err(ProtectionError::Agent {
                status: 403,
                code: "AccessDeniedException".into(),
                message: "Invalid Request: no task IAM role credentials available for task".into(),
            })
        );
        assert!(matches!(
            interpret(502, b"<html>", true),
            Err(ProtectionError::Unexpected { status: 502, .. })
        ));
        assert!(matches!(interpret(200, b"{}", true), Err(ProtectionError::Unexpected { .. })));
        let long = format!(r#"{{"error":{{"Code":"X","Message":"{}"}}}}"#, "m".repeat(1000));
        let Err(ProtectionError::Agent { message, .. }) = interpret(500, long.as_bytes(), true) else {
            panic!("an agent error")
        };
        assert_eq!(message.chars().count(), MESSAGE_LIMIT + 1);
    }

    #[test]
    fn agent_uris() {
        let protection = TaskProtection::new(Some("http://169.254.170.2/api/abc-123/")).unwrap();
        let agent = protection.agent.as_ref().unwrap();
        assert_eq!(agent.state_uri, "http://169.254.170.2/api/abc-123/task-protection/v1/state");
        assert_eq!(
            TaskProtection::new(Some("https://169.254.170.2/api/x")).unwrap_err(),
            ProtectionError::InvalidAgentUri("not an http:// URI")
        );
        assert!(TaskProtection::new(Some("not a uri")).is_err());
        assert!(TaskProtection::new(Some("/api/x")).is_err());
    }

    #[tokio::test]
    async fn enable_refuses_an_expiry_outside_the_api_range() {
        let protection = TaskProtection::disabled();
        assert_eq!(protection.enable(0).await, Err(ProtectionError::InvalidExpiry(0)));
        assert_eq!(protection.enable(2881).await, Err(ProtectionError::InvalidExpiry(2881)));
    }
}
