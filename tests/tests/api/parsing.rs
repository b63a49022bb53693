//! Arbitrary request bodies give a 400 (or a success for a valid one), never a 500.

use axum::http::{Method, StatusCode};
use std::sync::OnceLock;

use proptest::prelude::*;
use ryze_tests::TestApp;
use serde_json::{Map, Value, json};

const BODY_ROUTES: [(&str, &str); 4] = [
    ("POST", "/api/instance/new"),
    ("POST", "/api/instance/settings/p"),
    ("POST", "/api/instance/proxy/p"),
    ("POST", "/api/instance/s3/p"),
];

/// Field names the routes know, plus some they do not.
const FIELDS: [&str; 16] = [
    "name",
    "token",
    "proxyEnabled",
    "proxyPort",
    "proxyHost",
    "webhookEvents",
    "chatwootAccountId",
    "keepOnlineStatus",
    "callRejectMessage",
    "enabled",
    "host",
    "port",
    "protocol",
    "secretKey",
    "bucket",
    "unknownThing",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z0-9 ._/:-]{0,12}".prop_map(Value::String),
        prop_oneof![Just("instance.state"), Just("socks5"), Just("1080"), Just("http")]
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(FIELDS.to_vec()), json_value()), 0..6).prop_map(|pairs| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
    })
}

/// One app for every case: a runtime, an app with an account, and an instance `p` for the
/// per-instance routes.
struct Fixture {
    rt: tokio::runtime::Runtime,
    app: TestApp,
    token: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let (app, token) = rt.block_on(async {
            let app = TestApp::on(crate::BACKEND).await;
            let account = app
                .account_with(ryze_core::domain::AccountLimits {
                    instance_quota: 100_000,
                    requests_per_minute: u32::MAX,
                    creates_per_minute: u32::MAX,
                })
                .await;
            app.create(&account.token, json!({"name": "p"})).await;
            (app, account.token)
        });
        Fixture { rt, app, token }
    })
}

fn assert_clean(response: &ryze_tests::TestResponse, what: &str) {
    assert!(!response.status.is_server_error(), "{what} gave {}: {}", response.status, response.text);
    if !response.status.is_success() {
        assert!(matches!(response.status.as_u16(), 400 | 403 | 409), "{what} gave {}", response.status);
        assert!(!response.error_message().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_400(bytes in prop::collection::vec(any::<u8>(), 0..200), route in 0..4usize) {
        let Fixture { rt, app, token } = fixture();
        let (_, path) = BODY_ROUTES[route];
        let response = rt.block_on(app.raw(Method::POST, path, Some(("token", token)), Some(bytes.clone())));
        // Bytes that happen to be a valid body may succeed; nothing else may.
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        if !parsed.as_ref().is_some_and(Value::is_object) {
            prop_assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text);
            prop_assert_eq!(response.error_message(), "Invalid request body");
        } else {
            assert_clean(&response, path);
        }
    }

    #[test]
    fn arbitrary_json_bodies_never_fail_the_server(body in body_object(), route in 0..4usize) {
        let Fixture { rt, app, token } = fixture();
        let (_, path) = BODY_ROUTES[route];
        let response = rt.block_on(app.post(path, token, body.clone()));
        assert_clean(&response, &format!("{path} {body}"));
    }

    #[test]
    fn arbitrary_json_values_never_fail_the_server(body in json_value(), route in 0..4usize) {
        let Fixture { rt, app, token } = fixture();
        let (_, path) = BODY_ROUTES[route];
        let response = rt.block_on(app.post(path, token, body.clone()));
        assert_clean(&response, &format!("{path} {body}"));
    }

    #[test]
    fn arbitrary_paths_and_queries_never_fail_the_server(segment in "[a-zA-Z0-9%._~ -]{0,20}", query in "[a-z=&0-9%]{0,20}") {
        let Fixture { rt, app, token } = fixture();
        let segment = segment.replace(' ', "%20");
        for prefix in ["/api/instance/getProxy/", "/api/instance/getSettings/", "/api/instance/list?instanceName="] {
            let path = format!("{prefix}{segment}?{query}");
            let Ok(uri) = path.parse::<axum::http::Uri>() else { continue };
            let response = rt.block_on(app.get(&uri.to_string(), token));
            prop_assert!(!response.status.is_server_error(), "{} gave {}: {}", path, response.status, response.text);
        }
    }
}
