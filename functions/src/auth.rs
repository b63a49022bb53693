//! The authentication and rate-limit layer in front of every `/api` route.
//!
//! It resolves the token (the `token` header, or `Authorization: Bearer`), counts the request against
//! the token's budget for this route, refuses with 429 past it, and stamps the `X-RateLimit-*`
//! headers on whatever the handler answers. Requests that fail authentication are refused before
//! any counter is touched, so random tokens cannot fill the counter store. Requests that match no
//! route are answered through [`answer_unrouted`], which counts and stamps them the same way when
//! their token is valid.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ryze_core::service::{Bucket, RateDecision};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Authenticated;

const CREATE_ROUTE: &str = "/api/instance/new";

pub async fn authenticate(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let caller = match app.services.auth.resolve(presented_token(request.headers())).await {
        Ok(caller) => caller,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let is_create = request.method() == Method::POST
        && request.extensions().get::<MatchedPath>().is_some_and(|path| path.as_str() == CREATE_ROUTE);
    let bucket = if is_create { Bucket::Creates } else { Bucket::Requests };
    let decision = match app.services.limiter.check(&caller, bucket).await {
        Ok(decision) => decision,
        Err(error) => return ApiError::from(error).into_response(),
    };
    if decision.allowed {
        request.extensions_mut().insert(Authenticated(caller));
    }
    answer_counted(&decision, next.run(request)).await
}

/// The answer to a request that no route takes (404, or 405 for a method a path does not have).
/// An authenticated caller is counted and gets the rate-limit headers, as on every route, and a
/// 429 past its budget. Anyone else gets the bare answer: an unknown route needs no token, so a
/// missing or unknown one changes nothing there.
pub async fn answer_unrouted(app: &AppState, headers: &HeaderMap, error: ApiError) -> Response {
    let Some(token) = presented_token(headers) else {
        return error.into_response();
    };
    let Ok(caller) = app.services.auth.resolve(Some(token)).await else {
        return error.into_response();
    };
    match app.services.limiter.check(&caller, Bucket::Requests).await {
        Ok(decision) => answer_counted(&decision, std::future::ready(error.into_response())).await,
        Err(failure) => ApiError::from(failure).into_response(),
    }
}

/// `answer` when the request is within its budget, else the 429; with the rate-limit headers.
async fn answer_counted(decision: &RateDecision, answer: impl Future<Output = Response>) -> Response {
    let mut response = if decision.allowed {
        answer.await
    } else {
        let mut refused = ApiError::rate_limited().into_response();
        refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(decision.retry_after));
        refused
    };
    stamp_rate_headers(response.headers_mut(), decision);
    response
}

/// The token from `token`, or else from `Authorization: Bearer`.
pub(crate) fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(token) = headers.get("token").and_then(|v| v.to_str().ok()) {
        return Some(token);
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

pub(crate) fn stamp_rate_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    headers.insert(LIMIT, HeaderValue::from(decision.limit));
    headers.insert(REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RESET, HeaderValue::from(decision.reset_at));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn the_token_header_wins_over_bearer() {
        assert_eq!(presented_token(&headers(&[("token", "a"), ("authorization", "Bearer b")])), Some("a"));
        assert_eq!(presented_token(&headers(&[("authorization", "Bearer b")])), Some("b"));
        assert_eq!(presented_token(&headers(&[("authorization", "bearer  b")])), Some(" b"));
        assert_eq!(presented_token(&headers(&[("authorization", "Basic b")])), None);
        assert_eq!(presented_token(&headers(&[])), None);
    }
}
