//! UC-01 (register, verify, resend) and UC-02 (login, TOTP MFA, JWT with
//! refresh and logout, lockout, API keys).

use crate::app::{AppState, Auth, Claims, JsonBody};
use crate::crypto;
use crate::error::{ApiError, ApiResult};
use crate::time::now_secs;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use brokerx_engine::{Command, Event, Limits, RejectCode, SelfTradePrevention};
use rusqlite::OptionalExtension;
use serde_json::{json, Value};
use std::collections::HashMap;

const PASSCODE_TTL: u64 = 15 * 60;
const PASSCODE_ATTEMPTS: i64 = 5;
const MFA_TOKEN_TTL: u64 = 300;

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

fn passcode_hash(user_id: i64, code: &str) -> String {
    crypto::sha256_hex(format!("{user_id}:{code}").as_bytes())
}

fn new_passcode() -> String {
    let n = u32::from_le_bytes(crypto::random_bytes::<4>()) % 1_000_000;
    format!("{n:06}")
}

async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(|_| ApiError::internal("hashing failed"))
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || crypto::verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

async fn send_passcode(state: &AppState, email: &str, code: &str) -> ApiResult<()> {
    crate::mail::send(
        state,
        email,
        "BrokerX verification code",
        &format!("Your BrokerX verification code is {code}. It expires in 15 minutes."),
    )
    .await
}

/// POST /api/v1/auth/register {email, password, name}
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    request_body = crate::openapi::RegisterRequest,
    responses((status = 201, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn register(State(state): State<AppState>, body: JsonBody) -> ApiResult<Response> {
    let email = body.str("email")?.trim().to_ascii_lowercase();
    let password = body.str("password")?.to_string();
    let name = body.str("name")?.trim().to_string();
    if !valid_email(&email) {
        return Err(ApiError::unprocessable(
            "invalid_email",
            "invalid email address",
        ));
    }
    if password.chars().count() < 8 || password.len() > 256 {
        return Err(ApiError::unprocessable(
            "weak_password",
            "password must be 8 to 256 characters",
        ));
    }
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "name must be 1 to 100 characters",
        ));
    }
    let hash = hash_password(password).await?;
    let code = new_passcode();
    let now = now_secs() as i64;
    let (email_c, name_c, code_c) = (email.clone(), name.clone(), code.clone());
    let inserted = state
        .db
        .call(move |c| -> Result<Option<i64>, rusqlite::Error> {
            let tx = c.transaction()?;
            let done = tx.execute(
                "INSERT OR IGNORE INTO users (email, name, password_hash, created_at, passcode_sent_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                rusqlite::params![email_c, name_c, hash, now],
            )?;
            if done == 0 {
                return Ok(None);
            }
            let id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE users SET passcode_hash = ?1, passcode_expires = ?2 WHERE id = ?3",
                rusqlite::params![passcode_hash(id, &code_c), now + PASSCODE_TTL as i64, id],
            )?;
            tx.commit()?;
            Ok(Some(id))
        })
        .await??;
    let Some(id) = inserted else {
        return Err(ApiError::conflict(
            "email_taken",
            "an account with this email exists",
        ));
    };
    send_passcode(&state, &email, &code).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id,
            "email": email,
            "name": name,
            "status": "pending_verification",
        })),
    )
        .into_response())
}

/// The engine account of a verified user: created by a journaled command.
async fn open_account(state: &AppState, user_id: i64) -> ApiResult<u32> {
    let account = state
        .config
        .account_base
        .checked_add(u32::try_from(user_id).map_err(|_| ApiError::internal("user id range"))?)
        .ok_or_else(|| ApiError::internal("account id range"))?;
    let outputs = state
        .bridge
        .request(Command::CreateAccount {
            account: brokerx_engine::AccountId(account),
            limits: Limits::UNLIMITED,
            self_trade: SelfTradePrevention::CancelNewest,
        })
        .await?;
    for output in outputs {
        match output.event {
            Event::AccountCreated { .. } => return Ok(account),
            Event::Rejected {
                code: RejectCode::AccountExists,
                ..
            } => return Ok(account),
            Event::Rejected { code, .. } => {
                return Err(ApiError::internal(format!(
                    "account creation refused: {}",
                    code.name()
                )))
            }
            _ => {}
        }
    }
    Err(ApiError::internal("no reply to account creation"))
}

/// POST /api/v1/auth/verify {email, passcode}
#[utoipa::path(
    post,
    path = "/auth/verify",
    tag = "auth",
    request_body = crate::openapi::VerifyRequest,
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn verify(State(state): State<AppState>, body: JsonBody) -> ApiResult<Json<Value>> {
    let email = body.str("email")?.trim().to_ascii_lowercase();
    let code = body.str("passcode")?.trim().to_string();
    let now = now_secs() as i64;
    type Row = (i64, bool, Option<String>, i64, i64);
    let email_c = email.clone();
    let row: Option<Row> = state
        .db
        .call(move |c| {
            c.query_row(
                "SELECT id, verified, passcode_hash, passcode_expires, passcode_attempts FROM users WHERE email = ?1",
                [email_c],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
        })
        .await??;
    let invalid = || ApiError::unprocessable("invalid_passcode", "invalid or expired passcode");
    let Some((id, verified, hash, expires, attempts)) = row else {
        return Err(invalid());
    };
    if verified {
        return Err(ApiError::conflict("already_verified", "already verified"));
    }
    if attempts >= PASSCODE_ATTEMPTS {
        return Err(ApiError::unprocessable(
            "passcode_attempts_exceeded",
            "too many attempts: ask for a new passcode",
        ));
    }
    let matches =
        hash.is_some_and(|h| crypto::ct_eq(h.as_bytes(), passcode_hash(id, &code).as_bytes()));
    if !matches || expires < now {
        state
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE users SET passcode_attempts = passcode_attempts + 1 WHERE id = ?1",
                    [id],
                )
            })
            .await??;
        return Err(invalid());
    }
    let account = open_account(&state, id).await?;
    state
        .db
        .call(move |c| {
            c.execute(
                "UPDATE users SET verified = 1, account = ?1, passcode_hash = NULL WHERE id = ?2",
                rusqlite::params![account, id],
            )
        })
        .await??;
    tracing::info!(gateway = "rest", user_id = id, account, "client verified");
    Ok(Json(json!({"status": "verified", "account_id": account})))
}

/// POST /api/v1/auth/resend {email}: a new passcode (rate limited).
#[utoipa::path(
    post,
    path = "/auth/resend",
    tag = "auth",
    request_body = crate::openapi::EmailRequest,
    responses((status = 202, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn resend(State(state): State<AppState>, body: JsonBody) -> ApiResult<Response> {
    let email = body.str("email")?.trim().to_ascii_lowercase();
    let now = now_secs() as i64;
    let interval = state.config.resend_interval_secs as i64;
    let code = new_passcode();
    let (email_c, code_c) = (email.clone(), code.clone());
    // Ok(true): sent; Ok(false): unknown or verified (answered the same).
    let result = state
        .db
        .call(move |c| -> Result<Result<bool, i64>, rusqlite::Error> {
            let row: Option<(i64, bool, i64)> = c
                .query_row(
                    "SELECT id, verified, passcode_sent_at FROM users WHERE email = ?1",
                    [email_c],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((id, verified, sent_at)) = row else {
                return Ok(Ok(false));
            };
            if verified {
                return Ok(Ok(false));
            }
            if now < sent_at + interval {
                return Ok(Err(sent_at + interval - now));
            }
            c.execute(
                "UPDATE users SET passcode_hash = ?1, passcode_expires = ?2, passcode_attempts = 0, passcode_sent_at = ?3 WHERE id = ?4",
                rusqlite::params![passcode_hash(id, &code_c), now + PASSCODE_TTL as i64, now, id],
            )?;
            Ok(Ok(true))
        })
        .await??;
    match result {
        Err(wait) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "a passcode was sent recently; wait before asking again",
        )
        .with_header("retry-after", wait.max(1).to_string())),
        Ok(sent) => {
            if sent {
                send_passcode(&state, &email, &code).await?;
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "sent_if_pending"})),
            )
                .into_response())
        }
    }
}

struct UserRow {
    id: i64,
    password_hash: String,
    account: Option<u32>,
    failed: i64,
    locked_until: i64,
    mfa_secret: Option<String>,
    mfa_enabled: bool,
    mfa_last_step: i64,
}

async fn user_by(state: &AppState, clause: &'static str, key: Value) -> ApiResult<Option<UserRow>> {
    let sql = format!(
        "SELECT id, password_hash, account, failed_logins, locked_until, mfa_secret, mfa_enabled, mfa_last_step FROM users WHERE {clause}"
    );
    let row = state
        .db
        .call(move |c| {
            let param: Box<dyn rusqlite::ToSql> = match key {
                Value::String(s) => Box::new(s),
                other => Box::new(other.as_i64().unwrap_or(-1)),
            };
            c.query_row(&sql, [param], |r| {
                Ok(UserRow {
                    id: r.get(0)?,
                    password_hash: r.get(1)?,
                    account: r.get(2)?,
                    failed: r.get(3)?,
                    locked_until: r.get(4)?,
                    mfa_secret: r.get(5)?,
                    mfa_enabled: r.get(6)?,
                    mfa_last_step: r.get(7)?,
                })
            })
            .optional()
        })
        .await??;
    Ok(row)
}

async fn issue_tokens(state: &AppState, user_id: i64, account: Option<u32>) -> ApiResult<Value> {
    let now = now_secs();
    let claims = Claims {
        sub: user_id,
        acc: account,
        exp: now + state.config.access_ttl_secs,
        iat: now,
        jti: crypto::token::<12>(),
        typ: "access".into(),
    };
    let access = crypto::jwt_sign(&state.config.jwt_secret, &claims);
    let refresh = crypto::token::<32>();
    let hash = crypto::sha256_hex(refresh.as_bytes());
    let expires = (now + state.config.refresh_ttl_secs) as i64;
    state
        .db
        .call(move |c| {
            c.execute(
                "INSERT INTO refresh_tokens (hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![hash, user_id, expires],
            )
        })
        .await??;
    Ok(json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": state.config.access_ttl_secs,
    }))
}

async fn record_failure(state: &AppState, user: &UserRow) -> ApiResult<()> {
    let now = now_secs() as i64;
    let (id, limit, lock_for) = (
        user.id,
        state.config.lockout_after as i64,
        state.config.lockout_secs as i64,
    );
    let failed = user.failed + 1;
    let locked = failed >= limit;
    state
        .db
        .call(move |c| {
            if locked {
                c.execute(
                    "UPDATE users SET failed_logins = 0, locked_until = ?1 WHERE id = ?2",
                    rusqlite::params![now + lock_for, id],
                )
            } else {
                c.execute(
                    "UPDATE users SET failed_logins = ?1 WHERE id = ?2",
                    rusqlite::params![failed, id],
                )
            }
        })
        .await??;
    if locked {
        tracing::warn!(
            gateway = "rest",
            user_id = id,
            "account locked after failed logins"
        );
    }
    Ok(())
}

fn locked_error(until: i64) -> ApiError {
    let wait = (until - now_secs() as i64).max(1);
    ApiError::new(
        StatusCode::LOCKED,
        "account_locked",
        "too many failed logins: the account is locked for a while",
    )
    .with_header("retry-after", wait.to_string())
}

/// Checks a TOTP code and consumes its step (no reuse).
async fn check_totp(state: &AppState, user: &UserRow, code: &str) -> ApiResult<bool> {
    let Some(secret) = user.mfa_secret.as_deref().and_then(crypto::base32_decode) else {
        return Ok(false);
    };
    let Some(step) = crypto::totp_check(&secret, code, now_secs()) else {
        return Ok(false);
    };
    if step as i64 <= user.mfa_last_step {
        return Ok(false);
    }
    let id = user.id;
    let updated = state
        .db
        .call(move |c| {
            c.execute(
                "UPDATE users SET mfa_last_step = ?1 WHERE id = ?2 AND mfa_last_step < ?1",
                rusqlite::params![step as i64, id],
            )
        })
        .await??;
    Ok(updated == 1)
}

async fn succeed_login(state: &AppState, user: &UserRow) -> ApiResult<Value> {
    let id = user.id;
    state
        .db
        .call(move |c| c.execute("UPDATE users SET failed_logins = 0 WHERE id = ?1", [id]))
        .await??;
    issue_tokens(state, user.id, user.account).await
}

/// POST /api/v1/auth/login {email, password, totp?}
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = crate::openapi::LoginRequest,
    responses((status = 200, description = "success", body = crate::openapi::Tokens), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn login(State(state): State<AppState>, body: JsonBody) -> ApiResult<Json<Value>> {
    let email = body.str("email")?.trim().to_ascii_lowercase();
    let password = body.str("password")?.to_string();
    let totp = body.opt_str("totp")?.map(str::to_string);
    let invalid = || ApiError::unauthorized("invalid_credentials", "invalid email or password");
    let Some(user) = user_by(&state, "email = ?1", Value::String(email)).await? else {
        // Same cost as a real check, so timing does not reveal accounts.
        let _ = tokio::task::spawn_blocking(move || crypto::hash_password(&password)).await;
        return Err(invalid());
    };
    if user.locked_until > now_secs() as i64 {
        return Err(locked_error(user.locked_until));
    }
    if !verify_password(password, user.password_hash.clone()).await {
        record_failure(&state, &user).await?;
        return Err(invalid());
    }
    if user.mfa_enabled {
        match totp {
            Some(code) => {
                if !check_totp(&state, &user, &code).await? {
                    record_failure(&state, &user).await?;
                    return Err(ApiError::unauthorized("invalid_totp", "invalid TOTP code"));
                }
            }
            None => {
                let now = now_secs();
                let claims = Claims {
                    sub: user.id,
                    acc: user.account,
                    exp: now + MFA_TOKEN_TTL,
                    iat: now,
                    jti: crypto::token::<12>(),
                    typ: "mfa".into(),
                };
                return Ok(Json(json!({
                    "mfa_required": true,
                    "mfa_token": crypto::jwt_sign(&state.config.jwt_secret, &claims),
                })));
            }
        }
    }
    Ok(Json(succeed_login(&state, &user).await?))
}

/// POST /api/v1/auth/login/mfa {mfa_token, code}
#[utoipa::path(
    post,
    path = "/auth/login/mfa",
    tag = "auth",
    request_body = crate::openapi::MfaLoginRequest,
    responses((status = 200, description = "success", body = crate::openapi::Tokens), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn login_mfa(State(state): State<AppState>, body: JsonBody) -> ApiResult<Json<Value>> {
    let token = body.str("mfa_token")?;
    let code = body.str("code")?.to_string();
    let claims: Claims = crypto::jwt_verify(&state.config.jwt_secret, token, now_secs())
        .map_err(|_| ApiError::unauthorized("invalid_token", "invalid or expired MFA token"))?;
    if claims.typ != "mfa" {
        return Err(ApiError::unauthorized("invalid_token", "not an MFA token"));
    }
    let user = user_by(&state, "id = ?1", json!(claims.sub))
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "unknown user"))?;
    if user.locked_until > now_secs() as i64 {
        return Err(locked_error(user.locked_until));
    }
    if !check_totp(&state, &user, &code).await? {
        record_failure(&state, &user).await?;
        return Err(ApiError::unauthorized("invalid_totp", "invalid TOTP code"));
    }
    Ok(Json(succeed_login(&state, &user).await?))
}

/// POST /api/v1/auth/refresh {refresh_token}: rotates the pair.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    request_body = crate::openapi::RefreshRequest,
    responses((status = 200, description = "success", body = crate::openapi::Tokens), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn refresh(State(state): State<AppState>, body: JsonBody) -> ApiResult<Json<Value>> {
    let token = body.str("refresh_token")?;
    let hash = crypto::sha256_hex(token.as_bytes());
    let now = now_secs() as i64;
    let found: Option<(i64, Option<u32>)> = state
        .db
        .call(move |c| -> Result<_, rusqlite::Error> {
            let tx = c.transaction()?;
            let row: Option<i64> = tx
                .query_row(
                    "SELECT user_id FROM refresh_tokens WHERE hash = ?1 AND revoked = 0 AND expires_at > ?2",
                    rusqlite::params![hash, now],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(user) = row else {
                return Ok(None);
            };
            tx.execute("UPDATE refresh_tokens SET revoked = 1 WHERE hash = ?1", [&hash])?;
            let account: Option<u32> =
                tx.query_row("SELECT account FROM users WHERE id = ?1", [user], |r| r.get(0))?;
            tx.commit()?;
            Ok(Some((user, account)))
        })
        .await??;
    let Some((user, account)) = found else {
        return Err(ApiError::unauthorized(
            "invalid_refresh_token",
            "invalid, expired or revoked refresh token",
        ));
    };
    Ok(Json(issue_tokens(&state, user, account).await?))
}

/// POST /api/v1/auth/logout {refresh_token?}: revokes this access token
/// and the refresh token (all of the user's, if none is given).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    request_body = crate::openapi::RefreshRequest,
    responses((status = 204, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn logout(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> ApiResult<StatusCode> {
    let refresh = body
        .opt_str("refresh_token")?
        .map(|t| crypto::sha256_hex(t.as_bytes()));
    let user = auth.user_id;
    let jti = auth.jti.clone();
    let exp = auth.exp as i64;
    if let Some(jti) = &jti {
        state
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(jti.clone());
    }
    state
        .db
        .call(move |c| -> Result<(), rusqlite::Error> {
            if let Some(jti) = jti {
                c.execute(
                    "INSERT OR IGNORE INTO revoked_jti (jti, expires_at) VALUES (?1, ?2)",
                    rusqlite::params![jti, exp],
                )?;
            }
            match refresh {
                Some(hash) => c.execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE hash = ?1 AND user_id = ?2",
                    rusqlite::params![hash, user],
                )?,
                None => c.execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?1",
                    [user],
                )?,
            };
            Ok(())
        })
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/v1/auth/mfa/enroll: a new secret and its otpauth URI; MFA is
/// on once a code from it is confirmed.
#[utoipa::path(
    post,
    path = "/auth/mfa/enroll",
    tag = "auth",
    responses((status = 200, description = "success", body = crate::openapi::MfaEnrolment), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn mfa_enroll(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let user = auth.user_id;
    let secret = crypto::base32_encode(&crypto::random_bytes::<20>());
    let secret_c = secret.clone();
    let (email, enabled): (String, bool) = state
        .db
        .call(move |c| {
            c.query_row(
                "SELECT email, mfa_enabled FROM users WHERE id = ?1",
                [user],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await??;
    if enabled {
        return Err(ApiError::conflict(
            "mfa_already_enabled",
            "MFA is already enabled",
        ));
    }
    state
        .db
        .call(move |c| {
            c.execute(
                "UPDATE users SET mfa_secret = ?1 WHERE id = ?2",
                rusqlite::params![secret_c, user],
            )
        })
        .await??;
    Ok(Json(json!({
        "secret": secret,
        "otpauth_uri": crypto::otpauth_uri("BrokerX", &email, &secret),
    })))
}

/// POST /api/v1/auth/mfa/confirm {code}
#[utoipa::path(
    post,
    path = "/auth/mfa/confirm",
    tag = "auth",
    request_body = crate::openapi::CodeRequest,
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn mfa_confirm(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let code = body.str("code")?.to_string();
    let user = user_by(&state, "id = ?1", json!(auth.user_id))
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "unknown user"))?;
    if user.mfa_enabled {
        return Err(ApiError::conflict(
            "mfa_already_enabled",
            "MFA is already enabled",
        ));
    }
    if user.mfa_secret.is_none() {
        return Err(ApiError::conflict("mfa_not_enrolled", "enrol first"));
    }
    if !check_totp(&state, &user, &code).await? {
        return Err(ApiError::unprocessable("invalid_totp", "invalid TOTP code"));
    }
    let id = user.id;
    state
        .db
        .call(move |c| c.execute("UPDATE users SET mfa_enabled = 1 WHERE id = ?1", [id]))
        .await??;
    Ok(Json(json!({"mfa_enabled": true})))
}

/// GET /api/v1/me
#[utoipa::path(
    get,
    path = "/me",
    tag = "auth",
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let user = auth.user_id;
    let row: Option<Value> = state
        .db
        .call(move |c| {
            c.query_row(
                "SELECT id, email, name, verified, account, mfa_enabled, created_at FROM users WHERE id = ?1",
                [user],
                |r| {
                    Ok(json!({
                        "id": r.get::<_, i64>(0)?,
                        "email": r.get::<_, String>(1)?,
                        "name": r.get::<_, String>(2)?,
                        "verified": r.get::<_, bool>(3)?,
                        "account_id": r.get::<_, Option<u32>>(4)?,
                        "mfa_enabled": r.get::<_, bool>(5)?,
                        "created_at": crate::time::rfc3339(r.get::<_, i64>(6)? as u64 * 1_000_000_000),
                    }))
                },
            )
            .optional()
        })
        .await??;
    row.map(Json)
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "unknown user"))
}

/// POST /api/v1/api-keys: a key id and secret (shown once; stored hashed).
#[utoipa::path(
    post,
    path = "/api-keys",
    tag = "auth",
    responses((status = 201, description = "success", body = crate::openapi::ApiKeyCreated), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn create_api_key(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let account = auth.account()?;
    let key_id = format!("BK{}", crypto::token::<9>().to_ascii_uppercase());
    let secret = crypto::token::<20>();
    let hash = crypto::sha256_hex(secret.as_bytes());
    let (key_c, hash_c, user) = (key_id.clone(), hash.clone(), auth.user_id);
    let now = now_secs() as i64;
    state
        .db
        .call(move |c| {
            c.execute(
                "INSERT INTO api_keys (key_id, user_id, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![key_c, user, hash_c, now],
            )
        })
        .await??;
    state
        .api_keys
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key_id.clone(), (hash, auth.user_id, Some(account)));
    Ok((
        StatusCode::CREATED,
        Json(json!({"key_id": key_id, "secret": secret})),
    )
        .into_response())
}

/// GET /api/v1/api-keys
#[utoipa::path(
    get,
    path = "/api-keys",
    tag = "auth",
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn list_api_keys(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let user = auth.user_id;
    let keys: Vec<Value> = state
        .db
        .call(move |c| -> Result<Vec<Value>, rusqlite::Error> {
            c.prepare("SELECT key_id, created_at, revoked FROM api_keys WHERE user_id = ?1 ORDER BY created_at")?
                .query_map([user], |r| {
                    Ok(json!({
                        "key_id": r.get::<_, String>(0)?,
                        "created_at": crate::time::rfc3339(r.get::<_, i64>(1)? as u64 * 1_000_000_000),
                        "revoked": r.get::<_, bool>(2)?,
                    }))
                })?
                .collect()
        })
        .await??;
    Ok(Json(Value::Array(keys)))
}

/// DELETE /api/v1/api-keys/{key_id}
#[utoipa::path(
    delete,
    path = "/api-keys/{key_id}",
    tag = "auth",
    params(("key_id" = String, Path)),
    responses((status = 204, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(key_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (user, key_c) = (auth.user_id, key_id.clone());
    let changed = state
        .db
        .call(move |c| {
            c.execute(
                "UPDATE api_keys SET revoked = 1 WHERE key_id = ?1 AND user_id = ?2 AND revoked = 0",
                rusqlite::params![key_c, user],
            )
        })
        .await??;
    if changed == 0 {
        return Err(ApiError::not_found("not_found", "no such API key"));
    }
    state
        .api_keys
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key_id);
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/v1/dev/mailbox?email=...: the development mailbox (only when
/// enabled in the config; an operator tool).
#[utoipa::path(
    get,
    path = "/dev/mailbox",
    tag = "auth",
    params(("email" = String, Query)),
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn dev_mailbox(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    if !state.config.dev_mailbox {
        return Err(ApiError::not_found("not_found", "no such endpoint"));
    }
    let email = query
        .get("email")
        .map(|e| e.trim().to_ascii_lowercase())
        .ok_or_else(|| {
            ApiError::unprocessable("missing_field", "missing query parameter `email`")
        })?;
    let messages: Vec<Value> = state
        .db
        .call(move |c| -> Result<Vec<Value>, rusqlite::Error> {
            c.prepare(
                "SELECT id, recipient, subject, body, created_at, delivery, error FROM outbox WHERE recipient = ?1 ORDER BY id DESC LIMIT 20",
            )?
            .query_map([email], |r| {
                Ok(json!({
                    "id": r.get::<_, i64>(0)?,
                    "to": r.get::<_, String>(1)?,
                    "subject": r.get::<_, String>(2)?,
                    "body": r.get::<_, String>(3)?,
                    "created_at": crate::time::rfc3339(r.get::<_, i64>(4)? as u64 * 1_000_000_000),
                    "delivery": r.get::<_, String>(5)?,
                    "error": r.get::<_, Option<String>>(6)?,
                }))
            })?
            .collect()
        })
        .await??;
    Ok(Json(json!({"messages": messages})))
}
