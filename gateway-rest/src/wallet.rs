//! UC-03: deposits and withdrawals through a simulated payment provider,
//! with `Idempotency-Key` semantics. The money movement itself is a
//! journaled engine command (`DepositCash` / `WithdrawCash`), so balances
//! replay; the provider is asked first, so a failure creates no money.

use crate::app::{AppState, Auth, JsonBody, RequestId};
use crate::crypto;
use crate::error::{ApiError, ApiResult};
use crate::money::{format_money, parse_money};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use brokerx_engine::{AccountId, Command, Event};
use rusqlite::OptionalExtension;
use serde_json::{json, Value};
use std::future::Future;

/// What the simulated provider says about an amount. As in the seed,
/// specific amounts fail on purpose: 10.00, 20.00, ... 80.00 (and 90.00
/// succeeds slowly, after about a second).
fn provider_failure(amount: u64) -> Option<ApiError> {
    use crate::money::SCALE;
    if !amount.is_multiple_of(SCALE) {
        return None;
    }
    let (status, code, message) = match amount / SCALE {
        10 => (
            StatusCode::PAYMENT_REQUIRED,
            "payment_declined",
            "the payment provider declined the transfer",
        ),
        20 => (
            StatusCode::PAYMENT_REQUIRED,
            "bank_insufficient_funds",
            "the bank account has insufficient funds",
        ),
        30 => (
            StatusCode::BAD_GATEWAY,
            "provider_error",
            "the payment provider failed",
        ),
        40 => (
            StatusCode::GATEWAY_TIMEOUT,
            "provider_timeout",
            "the payment provider timed out",
        ),
        50 => (
            StatusCode::PAYMENT_REQUIRED,
            "fraud_suspected",
            "the payment provider flagged the transfer",
        ),
        60 => (
            StatusCode::PAYMENT_REQUIRED,
            "bank_account_closed",
            "the bank account is closed",
        ),
        70 => (
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            "the payment provider is unavailable",
        ),
        80 => (
            StatusCode::PAYMENT_REQUIRED,
            "invalid_bank_account",
            "the bank account is invalid",
        ),
        _ => return None,
    };
    Some(ApiError::new(status, code, message))
}

pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<String> {
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| {
            ApiError::bad_request(
                "idempotency_key_required",
                "the Idempotency-Key header is required on money-moving requests",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::bad_request("invalid_idempotency_key", "invalid Idempotency-Key"))?
        .trim()
        .to_string();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 characters",
        ));
    }
    Ok(key)
}

fn stored_response(status: u16, body: &str, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", content_type.parse().expect("static"));
    if replayed {
        headers.insert("idempotent-replayed", "true".parse().expect("static"));
    }
    response
}

/// Runs `work` at most once per (account, key): the same key and body
/// replays the stored response, another body is 422, and a request still
/// in flight is 409. A 5xx that is not the provider's answer is not
/// stored, so the client may retry it.
pub async fn idempotent<F>(
    state: &AppState,
    account: u32,
    key: String,
    fingerprint: String,
    tag: u64,
    work: F,
) -> ApiResult<Response>
where
    F: Future<Output = ApiResult<(StatusCode, Value)>>,
{
    let hash = crypto::sha256_hex(fingerprint.as_bytes());
    let now = crate::time::now_secs() as i64;
    let (key_c, hash_c) = (key.clone(), hash.clone());
    // None: we own the key now; Some(row): it existed.
    let existing: Option<(String, String, i64, Option<String>)> = state
        .db
        .call(move |c| -> Result<_, rusqlite::Error> {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO idempotency (account, key, body_hash, state, created_at, tag) VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
                rusqlite::params![account, key_c, hash_c, now, tag as i64],
            )?;
            if inserted == 1 {
                return Ok(None);
            }
            // A record left pending for over a minute lost its request
            // (a crash mid-request, or an engine that did not answer). If
            // the engine applied that request's command, the projection
            // recorded its answer under the command's tag: complete the
            // record with it. Otherwise nothing moved, and the key is
            // taken over rather than blocking its owner forever.
            let stale: Option<Option<i64>> = c
                .query_row(
                    "SELECT tag FROM idempotency WHERE account = ?1 AND key = ?2 AND state = 'pending' AND created_at < ?3 - 60 AND body_hash = ?4",
                    rusqlite::params![account, key_c, now, hash_c],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(old_tag) = stale {
                let applied: Option<String> = match old_tag {
                    Some(old_tag) => c
                        .query_row(
                            "SELECT response FROM money_moves WHERE account = ?1 AND tag = ?2",
                            rusqlite::params![account, old_tag],
                            |r| r.get(0),
                        )
                        .optional()?,
                    None => None,
                };
                match applied {
                    Some(response) => {
                        c.execute(
                            "UPDATE idempotency SET state = 'done', status = 201, response = ?3 WHERE account = ?1 AND key = ?2",
                            rusqlite::params![account, key_c, response],
                        )?;
                    }
                    None => {
                        c.execute(
                            "UPDATE idempotency SET created_at = ?3, tag = ?4 WHERE account = ?1 AND key = ?2",
                            rusqlite::params![account, key_c, now, tag as i64],
                        )?;
                        return Ok(None);
                    }
                }
            }
            c.query_row(
                "SELECT body_hash, state, status, response FROM idempotency WHERE account = ?1 AND key = ?2",
                rusqlite::params![account, key_c],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })
        .await??;
    if let Some((stored_hash, stored_state, status, response)) = existing {
        if stored_hash != hash {
            return Err(ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            ));
        }
        if stored_state == "pending" {
            return Err(ApiError::conflict(
                "idempotency_in_flight",
                "a request with this Idempotency-Key is still in progress",
            ));
        }
        return Ok(stored_response(
            status as u16,
            response.as_deref().unwrap_or("{}"),
            true,
        ));
    }
    let outcome = work.await;
    let (status, body, keep) = match &outcome {
        Ok((status, body)) => (*status, body.to_string(), true),
        // No answer from the engine: the command may still be applied.
        // The record stays pending; a retry after a minute finds out.
        Err(error) if error.code == "unavailable" => return Err(outcome.unwrap_err()),
        Err(error) => {
            let keep = !error.status.is_server_error()
                || matches!(
                    error.code,
                    "provider_error" | "provider_timeout" | "provider_unavailable"
                );
            let response =
                crate::error::ApiError::new(error.status, error.code, error.message.clone());
            let body = json!({
                "type": format!("https://brokerx.invalid/problems/{}", response.code),
                "title": error.status.canonical_reason().unwrap_or("Error"),
                "status": error.status.as_u16(),
                "detail": error.message,
                "code": error.code,
                "message": error.message,
            });
            (error.status, body.to_string(), keep)
        }
    };
    let status_code = status.as_u16() as i64;
    let body_c = body.clone();
    state
        .db
        .call(move |c| {
            if keep {
                c.execute(
                    "UPDATE idempotency SET state = 'done', status = ?1, response = ?2 WHERE account = ?3 AND key = ?4",
                    rusqlite::params![status_code, body_c, account, key],
                )
            } else {
                c.execute(
                    "DELETE FROM idempotency WHERE account = ?1 AND key = ?2",
                    rusqlite::params![account, key],
                )
            }
        })
        .await??;
    match outcome {
        Ok(_) => Ok(stored_response(status.as_u16(), &body, false)),
        Err(error) => Err(error),
    }
}

fn amount_of(body: &JsonBody) -> ApiResult<u64> {
    let amount = parse_money(body.value("amount")?)
        .map_err(|e| ApiError::unprocessable("invalid_amount", format!("amount: {e}")))?;
    if amount == 0 {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            "amount must be positive",
        ));
    }
    Ok(amount)
}

fn available_cash(state: &AppState, account: u32) -> u64 {
    state
        .bridge
        .state
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .accounts
        .get(&account)
        .map_or(0, |a| a.cash.available)
}

async fn move_cash(
    state: AppState,
    account: u32,
    amount: u64,
    credit: bool,
    request: RequestId,
) -> ApiResult<(StatusCode, Value)> {
    let RequestId(request_id, tag) = request;
    let limits = &state.config.wallet;
    let (limit, what) = if credit {
        (limits.max_deposit, "deposit")
    } else {
        (limits.max_withdrawal, "withdrawal")
    };
    if amount > limit {
        return Err(ApiError::unprocessable(
            "limit_exceeded",
            format!("a single {what} is limited to {}", format_money(limit)),
        ));
    }
    if credit && available_cash(&state, account).saturating_add(amount) > limits.max_wallet {
        return Err(ApiError::unprocessable(
            "wallet_limit_exceeded",
            format!(
                "the wallet is limited to {}",
                format_money(limits.max_wallet)
            ),
        ));
    }
    if !credit && available_cash(&state, account) < amount {
        return Err(ApiError::unprocessable(
            "insufficient_funds",
            "not enough available cash",
        ));
    }
    if amount == 90 * crate::money::SCALE {
        // The slow path of the simulated provider (about a second).
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    }
    if let Some(failure) = provider_failure(amount) {
        tracing::info!(gateway = "rest", request_id = %request_id, account, code = %failure.code, "payment provider refused");
        return Err(failure);
    }
    let command = if credit {
        Command::DepositCash {
            account: AccountId(account),
            amount,
            tag,
        }
    } else {
        Command::WithdrawCash {
            account: AccountId(account),
            amount,
            tag,
        }
    };
    let outputs = state.bridge.request(command).await?;
    tracing::info!(
        gateway = "rest",
        request_id = %request_id,
        tag,
        account,
        seq = outputs.first().map(|o| o.seq),
        kind = what,
        "wallet movement"
    );
    for output in &outputs {
        match output.event {
            Event::CashMoved { available, .. } => {
                return Ok((
                    StatusCode::CREATED,
                    crate::projection::transfer_json(
                        output.seq,
                        credit,
                        amount,
                        available,
                        output.timestamp_ns,
                    ),
                ))
            }
            Event::Rejected { code, .. } => return Err(crate::trading::reject_error(code)),
            _ => {}
        }
    }
    Err(ApiError::internal("no reply from the engine"))
}

async fn money_request(
    state: AppState,
    auth: Auth,
    request_id: RequestId,
    headers: HeaderMap,
    body: JsonBody,
    credit: bool,
) -> ApiResult<Response> {
    let account = auth.account()?;
    let key = idempotency_key(&headers)?;
    let fingerprint = format!(
        "{}:{}",
        if credit { "deposit" } else { "withdraw" },
        Value::Object(body.0.clone())
    );
    let amount = amount_of(&body);
    let tag = request_id.1;
    idempotent(&state.clone(), account, key, fingerprint, tag, async move {
        let amount = amount?;
        move_cash(state, account, amount, credit, request_id).await
    })
    .await
}

/// POST /api/v1/wallet/deposit {amount} with Idempotency-Key
#[utoipa::path(
    post,
    path = "/wallet/deposit",
    tag = "wallet",
    request_body = crate::openapi::AmountRequest,
    params(("Idempotency-Key" = String, Header)),
    responses((status = 201, description = "success", body = crate::openapi::Transfer), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn deposit(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    money_request(state, auth, request_id, headers, body, true).await
}

/// POST /api/v1/wallet/withdraw {amount} with Idempotency-Key
#[utoipa::path(
    post,
    path = "/wallet/withdraw",
    tag = "wallet",
    request_body = crate::openapi::AmountRequest,
    params(("Idempotency-Key" = String, Header)),
    responses((status = 201, description = "success", body = crate::openapi::Transfer), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn withdraw(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    money_request(state, auth, request_id, headers, body, false).await
}

/// GET /api/v1/wallet
#[utoipa::path(
    get,
    path = "/wallet",
    tag = "wallet",
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn wallet(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let read = state.bridge.state.read().unwrap_or_else(|e| e.into_inner());
    let cash = read
        .accounts
        .get(&account)
        .map(|a| a.cash)
        .unwrap_or_default();
    Ok(Json(json!({
        "account_id": account,
        "currency": "USD",
        "available": format_money(cash.available),
        "reserved": format_money(cash.reserved),
        "total": format_money(cash.available + cash.reserved),
    })))
}
