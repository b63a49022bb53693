//! Chatwoot on create (API.md "Chatwoot"): the inbox is found or created, each failure is reported in
//! `integrations.chatwoot` with its message, and the instance is created either way.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ryze_tests::fake_chatwoot::{FakeChatwoot, Mode};
use ryze_tests::{TestAccount, TestApp, TestResponse};
use serde_json::{Value, json};

const API_TOKEN: &str = "cw-api-token-0042";
const ACCOUNT: i64 = 7;
const INBOXES: &str = "/api/v1/accounts/7/inboxes";

fn chatwoot_body(name: &str, chatwoot: &FakeChatwoot) -> Value {
    json!({
        "name": name, "chatwootEnabled": true, "chatwootBaseUrl": chatwoot.base_url(),
        "chatwootAccountId": ACCOUNT, "chatwootApiToken": API_TOKEN, "chatwootInboxName": "WhatsApp Sales",
    })
}

async fn create(app: &TestApp, account: &TestAccount, body: Value) -> TestResponse {
    let response = app.post("/api/instance/new", &account.token, body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    response
}

async fn listed_chatwoot(app: &TestApp, account: &TestAccount, name: &str) -> Value {
    let list = app.get(&format!("/api/instance/list?instanceName={name}"), &account.token).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    list.json["instances"][0]["chatwoot"].clone()
}

#[tokio::test]
async fn create_links_a_new_api_inbox_and_reports_its_id() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let chatwoot = FakeChatwoot::start(API_TOKEN).await;
    chatwoot.add_inbox(ACCOUNT, "Website", "Channel::WebWidget");

    let created = create(&app, &account, chatwoot_body("sales", &chatwoot)).await;
    let inbox_id = created.json["integrations"]["chatwoot"]["inboxId"].as_i64().expect("an inboxId");
    assert_eq!(created.json["integrations"]["chatwoot"], json!({"status": "ok", "inboxId": inbox_id}));

    let calls = chatwoot.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!((&calls[0].method, calls[0].path.as_str()), (&Method::GET, INBOXES));
    assert_eq!((&calls[1].method, calls[1].path.as_str()), (&Method::POST, INBOXES));
    for call in &calls {
        assert_eq!(call.token.as_deref(), Some(API_TOKEN));
        assert!(call.headers.get("authorization").is_none());
    }
    assert_eq!(
        calls[1].body,
        json!({"name": "WhatsApp Sales", "channel": {"type": "api", "webhook_url": ""}})
    );
    let inboxes = chatwoot.inboxes(ACCOUNT);
    assert_eq!(inboxes.len(), 2);
    assert_eq!((inboxes[1]["id"].as_i64(), &inboxes[1]["name"]), (Some(inbox_id), &json!("WhatsApp Sales")));

    assert_eq!(
        listed_chatwoot(&app, &account, "sales").await,
        json!({"enabled": true, "baseUrl": chatwoot.base_url(), "accountId": ACCOUNT,
            "inboxName": "WhatsApp Sales", "status": "ok", "inboxId": inbox_id})
    );
}

#[tokio::test]
async fn an_existing_inbox_of_the_same_name_is_reused() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let chatwoot = FakeChatwoot::start(API_TOKEN).await;
    let first = create(&app, &account, chatwoot_body("first", &chatwoot)).await;
    let second = create(&app, &account, chatwoot_body("second", &chatwoot)).await;
    let inbox_id = first.json["integrations"]["chatwoot"]["inboxId"].clone();
    assert!(inbox_id.is_i64(), "{}", first.text);
    assert_eq!(second.json["integrations"]["chatwoot"], json!({"status": "ok", "inboxId": inbox_id}));
    let methods: Vec<Method> = chatwoot.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(methods, [Method::GET, Method::POST, Method::GET], "no second POST");
    assert_eq!(chatwoot.inboxes(ACCOUNT).len(), 1);
    assert_eq!(listed_chatwoot(&app, &account, "second").await["inboxId"], inbox_id);
}

#[tokio::test]
async fn the_inbox_name_defaults_to_the_instance_name() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let chatwoot = FakeChatwoot::start(API_TOKEN).await;
    let mut body = chatwoot_body("support", &chatwoot);
    body.as_object_mut().unwrap().remove("chatwootInboxName");
    let created = create(&app, &account, body).await;
    assert_eq!(created.json["integrations"]["chatwoot"]["status"], "ok", "{}", created.text);
    assert_eq!(chatwoot.inboxes(ACCOUNT)[0]["name"], "support");
}

#[tokio::test]
async fn each_failure_is_reported_and_the_instance_is_still_created() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let cases = [
        (Mode::Status(401), "Chatwoot rejected the API token — verify chatwootApiToken"),
        (
            Mode::Status(403),
            "Chatwoot denied the request — verify the API token has admin scope on account 7",
        ),
        (
            Mode::Status(404),
            "Chatwoot account or endpoint not found — verify chatwootBaseUrl and chatwootAccountId",
        ),
        (Mode::Status(500), "Chatwoot answered 500"),
        (Mode::Status(302), "Chatwoot answered 302"),
        (Mode::Garbage, "Chatwoot answered with an unreadable body"),
    ];
    for (index, (mode, message)) in cases.into_iter().enumerate() {
        let chatwoot = FakeChatwoot::start(API_TOKEN).await;
        chatwoot.set_mode(mode);
        let name = format!("failing-{index}");
        let created = create(&app, &account, chatwoot_body(&name, &chatwoot)).await;
        assert_eq!(
            created.json["integrations"]["chatwoot"],
            json!({"status": "error", "error": message}),
            "{mode:?}"
        );
        assert_eq!(created.json["instance"]["name"], name.as_str());
        let listed = listed_chatwoot(&app, &account, &name).await;
        assert_eq!((&listed["status"], &listed["inboxId"]), (&json!("error"), &Value::Null), "{mode:?}");
        assert_eq!(chatwoot.calls().len(), 1, "{mode:?}: nothing after the failed lookup");
    }
}

#[tokio::test]
async fn a_wrong_token_is_what_chatwoot_rejects() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let chatwoot = FakeChatwoot::start("another-token").await;
    let created = create(&app, &account, chatwoot_body("wrong-token", &chatwoot)).await;
    assert_eq!(
        created.json["integrations"]["chatwoot"]["error"],
        "Chatwoot rejected the API token — verify chatwootApiToken"
    );
    assert_eq!(chatwoot.calls()[0].token.as_deref(), Some(API_TOKEN));
}

#[tokio::test]
async fn an_unreachable_chatwoot_is_reported() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed); // nothing listens there any more
    let body = json!({"name": "unreachable", "chatwootEnabled": true, "chatwootBaseUrl": base_url,
        "chatwootAccountId": ACCOUNT, "chatwootApiToken": API_TOKEN});
    let created = create(&app, &account, body).await;
    let report = &created.json["integrations"]["chatwoot"];
    assert_eq!(report["status"], "error");
    let error = report["error"].as_str().unwrap();
    assert!(error.starts_with("Chatwoot could not be reached: could not connect to 127.0.0.1:"), "{error}");
}

#[tokio::test]
async fn a_chatwoot_that_never_answers_is_reported_within_the_budget() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let chatwoot = FakeChatwoot::start(API_TOKEN).await;
    chatwoot.set_mode(Mode::Hang);
    let started = Instant::now();
    let created = create(&app, &account, chatwoot_body("silent", &chatwoot)).await;
    let took = started.elapsed();
    assert_eq!(
        created.json["integrations"]["chatwoot"],
        json!({"status": "error", "error": "Chatwoot did not answer in time"})
    );
    assert!(took < Duration::from_secs(12), "create took {took:?}");
    assert_eq!(listed_chatwoot(&app, &account, "silent").await["status"], "error");
}

#[tokio::test]
async fn a_loopback_chatwoot_is_refused_unless_private_targets_are_allowed() {
    let app = TestApp::refusing_private_targets(crate::BACKEND).await;
    let account = app.account().await;
    let chatwoot = FakeChatwoot::start(API_TOKEN).await;
    let created = create(&app, &account, chatwoot_body("private", &chatwoot)).await;
    assert_eq!(
        created.json["integrations"]["chatwoot"],
        json!({"status": "error", "error":
            "refused target 127.0.0.1: loopback address (set RYZE_ALLOW_PRIVATE_TARGETS=true to allow)"})
    );
    assert!(chatwoot.calls().is_empty(), "nothing reached the loopback Chatwoot");
    let listed = listed_chatwoot(&app, &account, "private").await;
    assert_eq!((&listed["status"], &listed["inboxId"]), (&json!("error"), &Value::Null));
}
