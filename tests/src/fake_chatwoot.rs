//! A fake Chatwoot on 127.0.0.1: the two inbox endpoints an instance's linking calls
//! (`GET` and `POST /api/v1/accounts/{id}/inboxes`), behind Chatwoot's `api_access_token` header.
//! It keeps the inboxes it creates, records every call for assertions, and can be told to fail the
//! way a misconfigured or unwell Chatwoot does (a status, a body that is not JSON, no answer at all).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// How the fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As Chatwoot does: 401 for a wrong token, the inboxes otherwise.
    Normal,
    /// Every call answers this status (401, 403, 404, 500...) with a JSON error body.
    Status(u16),
    /// Every call answers 200 with a body that is not JSON.
    Garbage,
    /// Every call is accepted and never answered.
    Hang,
}

/// One call as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Method,
    /// The request line's path and query.
    pub path: String,
    /// The `api_access_token` header.
    pub token: Option<String>,
    /// Every header, for checks of what was (not) sent.
    pub headers: HeaderMap,
    /// The JSON body, `Value::Null` when there was none.
    pub body: Value,
}

struct Inner {
    token: String,
    mode: Mutex<Mode>,
    calls: Mutex<Vec<Call>>,
    /// Inboxes by account, in creation order.
    inboxes: Mutex<HashMap<i64, Vec<Value>>>,
}

/// A running fake; stops when dropped.
pub struct FakeChatwoot {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for FakeChatwoot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeChatwoot {
    /// A fake that accepts `token` as its API access token, with no inboxes yet.
    pub async fn start(token: &str) -> Self {
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            mode: Mutex::new(Mode::Normal),
            calls: Mutex::new(Vec::new()),
            inboxes: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/api/v1/accounts/{account}/inboxes", get(inboxes).post(inboxes))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Chatwoot");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner, task }
    }

    /// What `chatwootBaseUrl` is set to.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// The inboxes of `account`, as the fake would list them.
    pub fn inboxes(&self, account: i64) -> Vec<Value> {
        self.inner.inboxes.lock().unwrap().get(&account).cloned().unwrap_or_default()
    }

    /// Adds an inbox to `account` as if created in Chatwoot's UI; returns its id.
    pub fn add_inbox(&self, account: i64, name: &str, channel_type: &str) -> i64 {
        self.inner.add_inbox(account, name, channel_type)
    }
}

impl Inner {
    fn add_inbox(&self, account: i64, name: &str, channel_type: &str) -> i64 {
        let mut all = self.inboxes.lock().unwrap();
        let id = all.values().map(Vec::len).sum::<usize>() as i64 + 1;
        // The fields linking reads, and a few of the many others Chatwoot sends.
        let inbox = json!({
            "id": id, "name": name, "channel_type": channel_type, "channel_id": id,
            "avatar_url": "", "greeting_enabled": false, "working_hours": [],
            "webhook_url": "", "enable_auto_assignment": true,
        });
        all.entry(account).or_default().push(inbox);
        id
    }
}

async fn inboxes(
    State(inner): State<Arc<Inner>>,
    Path(account): Path<i64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers.get("api_access_token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let call = Call {
        method: method.clone(),
        path: uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default(),
        token: token.clone(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    inner.calls.lock().unwrap().push(call.clone());
    let mode = *inner.mode.lock().unwrap();
    match mode {
        Mode::Hang => std::future::pending().await,
        Mode::Garbage => return (StatusCode::OK, "<html>maintenance</html>").into_response(),
        Mode::Status(status) => {
            let status = StatusCode::from_u16(status).expect("a status code");
            return (status, axum::Json(json!({"error": status.canonical_reason()}))).into_response();
        }
        Mode::Normal => {}
    }
    if token.as_deref() != Some(inner.token.as_str()) {
        let error = json!({"errors": ["Invalid Access Token"]});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    if method == Method::GET {
        return axum::Json(
            json!({ "payload": inner.inboxes.lock().unwrap().get(&account).cloned().unwrap_or_default() }),
        )
        .into_response();
    }
    let name = call.body["name"].as_str().unwrap_or_default().to_owned();
    let channel_type = match call.body["channel"]["type"].as_str() {
        Some("api") => "Channel::Api",
        _ => {
            return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"message": "bad channel"})))
                .into_response();
        }
    };
    let id = inner.add_inbox(account, &name, channel_type);
    let created = inner.inboxes.lock().unwrap()[&account].iter().find(|i| i["id"] == id).cloned();
    axum::Json(created.expect("the inbox just added")).into_response()
}
