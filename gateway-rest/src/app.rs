//! Shared state, router, middleware (request id, per-IP rate limit, body
//! limit, problem+json fallbacks) and extractors (JSON body, auth).

use crate::bridge::Bridge;
use crate::crypto;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::RateLimiter;
use crate::RestConfig;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// An API key: (secret hash, user id, account).
pub type ApiKeyEntry = (String, i64, Option<u32>);

pub struct Inner {
    pub config: RestConfig,
    pub bridge: Arc<Bridge>,
    pub db: Db,
    /// Revoked access-token ids (logout), checked on every request.
    pub revoked: RwLock<HashSet<String>>,
    /// API key id -> (secret hash, user id, account).
    pub api_keys: RwLock<HashMap<String, ApiKeyEntry>>,
    pub ip_limiter: RateLimiter<IpAddr>,
    pub account_limiter: RateLimiter<u32>,
    pub resend_limiter: RateLimiter<String>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: RestConfig, bridge: Arc<Bridge>, db: Db) -> Result<AppState, String> {
        type Loaded = (Vec<String>, Vec<(String, i64, String, Option<u32>)>);
        let now = crate::time::now_secs() as i64;
        let loaded: Result<Loaded, rusqlite::Error> = db
            .call_blocking(move |c| {
                c.execute("DELETE FROM revoked_jti WHERE expires_at < ?1", [now])?;
                let jtis = c
                    .prepare("SELECT jti FROM revoked_jti")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                let keys = c
                    .prepare(
                        "SELECT k.key_id, k.user_id, k.secret_hash, u.account FROM api_keys k
                         JOIN users u ON u.id = k.user_id WHERE k.revoked = 0",
                    )?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((jtis, keys))
            })
            .map_err(|_| "sqlite thread gone".to_string())?;
        let (jtis, keys) = loaded.map_err(|e| format!("sqlite: {e}"))?;
        let resend_rate = 1;
        Ok(AppState(Arc::new(Inner {
            ip_limiter: RateLimiter::new(config.rate_per_ip),
            account_limiter: RateLimiter::new(config.rate_per_account),
            resend_limiter: RateLimiter::new(resend_rate),
            config,
            bridge,
            db,
            revoked: RwLock::new(jtis.into_iter().collect()),
            api_keys: RwLock::new(
                keys.into_iter()
                    .map(|(id, user, hash, account)| (id, (hash, user, account)))
                    .collect(),
            ),
        })))
    }
}

/// The request id: `X-Request-ID` if the client sent a sane one, else a
/// fresh one; and the request's engine tag. The command the request
/// submits carries that tag, so the request can be found in the journal: a
/// generated id *is* the tag (16 hex digits), and a client's own id is
/// logged with it. It is echoed on the response.
#[derive(Clone, Debug)]
pub struct RequestId(pub String, pub u64);

fn valid_request_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The REST surface's Prometheus series.
pub fn surface() -> &'static brokerx_metrics::Surface {
    static SURFACE: std::sync::OnceLock<brokerx_metrics::Surface> = std::sync::OnceLock::new();
    SURFACE.get_or_init(|| brokerx_metrics::Surface::new("rest"))
}

/// The route template a request matched (e.g. `/api/v1/orders/{id}`),
/// carried on the response to the outer middleware for the metrics label.
#[derive(Clone, Debug)]
struct RouteLabel(String);

/// Runs after routing (a route layer): records the matched route on the
/// response, unless an inner router already did.
async fn label_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string());
    let mut response = next.run(request).await;
    if let Some(route) = route {
        if response.extensions().get::<RouteLabel>().is_none() {
            response.extensions_mut().insert(RouteLabel(route));
        }
    }
    response
}

/// GET /metrics: the process's Prometheus metrics (the same text as the
/// metrics port).
async fn metrics_text() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            brokerx_metrics::CONTENT_TYPE,
        )],
        brokerx_metrics::render(),
    )
        .into_response()
}

async fn request_context(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let tag = state.bridge.tag();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map_or_else(|| format!("{tag:016x}"), str::to_string);
    request.extensions_mut().insert(RequestId(id.clone(), tag));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let decision = state.ip_limiter.check(&peer.ip());
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this address",
        )
        .with_header("retry-after", decision.reset_secs.max(1).to_string());
        for (name, value) in decision.headers() {
            error = error.with_header(name, value);
        }
        error.into_response()
    };
    let status = response.status();
    let is_problem = response.headers().get("content-type").is_some_and(|v| {
        v.as_bytes().starts_with(b"application/problem+json")
            || v.as_bytes().starts_with(b"application/json")
    });
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        // A rejection from axum itself (bad path or query encoding, a
        // failed WebSocket upgrade, ...): same problem+json shape.
        let bytes = axum::body::to_bytes(std::mem::take(response.body_mut()), 4096)
            .await
            .unwrap_or_default();
        let detail = String::from_utf8_lossy(&bytes).trim().to_string();
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UPGRADE_REQUIRED => "upgrade_required",
            _ if status.is_client_error() => "bad_request",
            _ => "internal",
        };
        let message = if detail.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            detail
        };
        let extra_headers: Vec<(axum::http::HeaderName, HeaderValue)> = response
            .headers()
            .iter()
            .filter(|(k, _)| *k != "content-type" && *k != "content-length")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        response = ApiError::new(status, code, message).into_response();
        for (k, v) in extra_headers {
            response.headers_mut().insert(k, v);
        }
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", value);
    }
    for (name, value) in decision.headers() {
        if !headers.contains_key(name) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    if status.is_client_error() || status.is_server_error() {
        let micros = started.elapsed().as_micros() as u64;
        if status.is_server_error() {
            tracing::error!(gateway = "rest", request_id = %id, method = %method, path = %path, status = status.as_u16(), micros, "request failed");
        } else {
            tracing::info!(gateway = "rest", request_id = %id, method = %method, path = %path, status = status.as_u16(), micros, "request refused");
        }
    }
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0.as_str());
    let surface = surface();
    surface.received(&format!("{} {route}", method.as_str()));
    surface.sent(match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    });
    if status.is_client_error() || status.is_server_error() {
        surface.error(status.as_str());
    }
    surface.observe_latency(started.elapsed());
    response
}

/// A JSON object body; every failure is a problem+json 4xx.
pub struct JsonBody(pub serde_json::Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "request body too large",
                    )
                } else {
                    ApiError::bad_request("bad_body", rejection.body_text())
                }
            })?;
        if bytes.is_empty() {
            return Ok(JsonBody(serde_json::Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonBody(map)),
            Ok(_) => Err(ApiError::bad_request(
                "invalid_json",
                "the body must be a JSON object",
            )),
            Err(e) => Err(ApiError::bad_request(
                "invalid_json",
                format!("malformed JSON: {e}"),
            )),
        }
    }
}

impl JsonBody {
    pub fn str(&self, field: &str) -> ApiResult<&str> {
        match self.0.get(field) {
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(Value::Null) | None => Err(ApiError::unprocessable(
                "missing_field",
                format!("missing field `{field}`"),
            )),
            Some(_) => Err(ApiError::unprocessable(
                "invalid_field",
                format!("`{field}` must be a string"),
            )),
        }
    }

    pub fn opt_str(&self, field: &str) -> ApiResult<Option<&str>> {
        match self.0.get(field) {
            Some(Value::Null) | None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::unprocessable(
                "invalid_field",
                format!("`{field}` must be a string"),
            )),
        }
    }

    pub fn value(&self, field: &str) -> ApiResult<&Value> {
        match self.0.get(field) {
            Some(Value::Null) | None => Err(ApiError::unprocessable(
                "missing_field",
                format!("missing field `{field}`"),
            )),
            Some(v) => Ok(v),
        }
    }

    pub fn opt_value(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }
}

/// Claims of an access token.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Claims {
    pub sub: i64,
    #[serde(default)]
    pub acc: Option<u32>,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub typ: String,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Auth {
    pub user_id: i64,
    pub account: Option<u32>,
    pub jti: Option<String>,
    pub exp: u64,
}

impl Auth {
    /// The engine account, or 403 for a client that has not verified.
    pub fn account(&self) -> ApiResult<u32> {
        self.account.ok_or_else(|| {
            ApiError::forbidden(
                "unverified",
                "verify your email address before depositing or trading",
            )
        })
    }
}

pub fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Auth> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = if let Some(value) = header("authorization") {
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("invalid_token", "expected `Authorization: Bearer <token>`")
            })?;
        let claims: Claims = crypto::jwt_verify(
            &state.config.jwt_secret,
            token.trim(),
            crate::time::now_secs(),
        )
        .map_err(|e| match e {
            crypto::JwtError::Expired => ApiError::unauthorized("token_expired", "token expired"),
            _ => ApiError::unauthorized("invalid_token", "invalid token"),
        })?;
        if claims.typ != "access" {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "not an access token",
            ));
        }
        if state
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&claims.jti)
        {
            return Err(ApiError::unauthorized("token_revoked", "token revoked"));
        }
        Auth {
            user_id: claims.sub,
            account: claims.acc,
            jti: Some(claims.jti),
            exp: claims.exp,
        }
    } else if let (Some(key_id), Some(secret)) =
        (header("apca-api-key-id"), header("apca-api-secret-key"))
    {
        let keys = state.api_keys.read().unwrap_or_else(|e| e.into_inner());
        let Some((hash, user_id, account)) = keys.get(key_id) else {
            return Err(ApiError::unauthorized("invalid_api_key", "invalid API key"));
        };
        if !crypto::ct_eq(
            crypto::sha256_hex(secret.as_bytes()).as_bytes(),
            hash.as_bytes(),
        ) {
            return Err(ApiError::unauthorized("invalid_api_key", "invalid API key"));
        }
        Auth {
            user_id: *user_id,
            account: *account,
            jti: None,
            exp: 0,
        }
    } else {
        return Err(ApiError::unauthorized(
            "unauthenticated",
            "authentication required (Bearer token or APCA-API-KEY-ID/APCA-API-SECRET-KEY)",
        ));
    };
    if let Some(account) = auth.account {
        let decision = state.account_limiter.check(&account);
        if !decision.allowed {
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this account",
            )
            .with_header("retry-after", decision.reset_secs.max(1).to_string());
            for (name, value) in decision.headers() {
                error = error.with_header(name, value);
            }
            return Err(error);
        }
    }
    Ok(auth)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth, ApiError> {
        authenticate(state, &parts.headers)
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the engine is running and its journal has not failed, the
/// read model is caught up with the journal (within what is in flight),
/// and SQLite answers.
async fn ready(State(state): State<AppState>) -> Response {
    let engine = state.bridge.is_live();
    let durable = state.bridge.durable_seq();
    let read_model = state
        .bridge
        .state
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .last_seq;
    let lag = durable.saturating_sub(read_model);
    let caught_up = lag <= 65_536;
    let sqlite = state
        .db
        .call(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).is_ok())
        .await
        .unwrap_or(false);
    let ok = engine && caught_up && sqlite;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "engine": engine,
        "journal_writable": engine,
        "durable_seq": durable,
        "read_model_seq": read_model,
        "read_model_lag": lag,
        "sqlite": sqlite,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(<crate::openapi::ApiDoc as utoipa::OpenApi>::openapi())
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

pub fn router(state: AppState) -> Router {
    use crate::{auth, trading, wallet, ws};
    let max_body = state.config.max_body_bytes;
    let api = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/auth/register", post(auth::register))
        .route("/auth/verify", post(auth::verify))
        .route("/auth/resend", post(auth::resend))
        .route("/auth/login", post(auth::login))
        .route("/auth/login/mfa", post(auth::login_mfa))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/mfa/enroll", post(auth::mfa_enroll))
        .route("/auth/mfa/confirm", post(auth::mfa_confirm))
        .route("/me", get(auth::me))
        .route(
            "/api-keys",
            post(auth::create_api_key).get(auth::list_api_keys),
        )
        .route("/api-keys/{key_id}", delete(auth::revoke_api_key))
        .route("/dev/mailbox", get(auth::dev_mailbox))
        .route("/wallet", get(wallet::wallet))
        .route("/wallet/deposit", post(wallet::deposit))
        .route("/wallet/withdraw", post(wallet::withdraw))
        .route("/symbols", get(trading::symbols))
        .route("/market/{symbol}/quote", get(trading::quote))
        .route("/market/{symbol}/depth", get(trading::depth))
        .route("/market/{symbol}/trades", get(trading::trades))
        .route(
            "/orders",
            post(trading::place)
                .get(trading::list)
                .delete(trading::cancel_all),
        )
        .route(
            "/orders/{id}",
            get(trading::get_one)
                .patch(trading::replace)
                .delete(trading::cancel_one),
        )
        .route("/portfolio", get(trading::portfolio))
        .route("/activities", get(trading::activities))
        .route("/ws", get(ws::api_ws))
        .route("/openapi.json", get(openapi_json))
        .route_layer(axum::middleware::from_fn(label_route));
    let v2 = crate::trading::alpaca_router().route_layer(axum::middleware::from_fn(label_route));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/stream", get(ws::alpaca_stream))
        .route_layer(axum::middleware::from_fn(label_route))
        .nest("/api/v1", api)
        .nest("/v2", v2)
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/v1/docs").url(
            "/api/v1/docs/openapi.json",
            <crate::openapi::ApiDoc as utoipa::OpenApi>::openapi(),
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}
