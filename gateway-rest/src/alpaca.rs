//! The Alpaca Trading API v2 surface: the same handlers' logic under
//! `/v2` with Alpaca's shapes (order ids are UUIDs, keys in
//! `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY`).

use crate::app::{AppState, Auth, JsonBody, RequestId};
use crate::error::{ApiError, ApiResult};
use crate::money::{format_money, format_qty, format_signed};
use crate::projection::asset_uuid;
use crate::trading::{self, read};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(account))
        .route("/orders", get(list_orders).post(place).delete(cancel_all))
        .route("/orders:by_client_order_id", get(by_client_order_id))
        .route(
            "/orders/{id}",
            get(get_order).patch(replace).delete(cancel_one),
        )
        .route("/positions", get(positions))
        .route("/positions/{symbol}", get(position))
        .route("/assets", get(assets))
        .route("/assets/{symbol}", get(asset))
        .route("/clock", get(clock))
        .route("/account/activities", get(activities))
        .route("/account/activities/{kind}", get(activities_of_kind))
}

fn account_uuid(account: u32) -> String {
    format!("{account:08x}-0000-4000-b000-000000000000")
}

async fn account(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let model = read(&state);
    let cash = model
        .accounts
        .get(&account)
        .map(|a| a.cash)
        .unwrap_or_default();
    let positions = trading::positions(&model, account);
    let market: u128 = positions.iter().map(|p| p.market_value()).sum();
    let total_cash = cash.available as u128 + cash.reserved as u128;
    let equity = format_money((total_cash + market).min(u64::MAX as u128) as u64);
    let cap = |v: u128| format_money(v.min(u64::MAX as u128) as u64);
    let suspended = model.accounts.get(&account).is_some_and(|a| a.suspended);
    Ok(Json(json!({
        "id": account_uuid(account),
        "account_number": format!("BX{account:08}"),
        "status": "ACTIVE",
        "crypto_status": null,
        "currency": "USD",
        "buying_power": format_money(cash.available),
        "regt_buying_power": format_money(cash.available),
        "daytrading_buying_power": "0",
        "non_marginable_buying_power": format_money(cash.available),
        "cash": cap(total_cash),
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "pending_transfer_out": "0",
        "portfolio_value": equity,
        "pattern_day_trader": false,
        "trading_blocked": suspended,
        "transfers_blocked": false,
        "account_blocked": false,
        "created_at": "2024-01-01T00:00:00Z",
        "trade_suspended_by_user": false,
        "multiplier": "1",
        "shorting_enabled": false,
        "equity": equity,
        "last_equity": equity,
        "long_market_value": cap(market),
        "short_market_value": "0",
        "initial_margin": "0",
        "maintenance_margin": "0",
        "last_maintenance_margin": "0",
        "sma": "0",
        "daytrade_count": 0,
        "options_buying_power": "0",
        "options_approved_level": 0,
        "options_trading_level": 0,
    })))
}

async fn place(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let order = trading::parse_new_order(&read(&state), &body)?;
    let rec = trading::place_order(&state, account, order, &request_id).await?;
    Ok(Json(read(&state).order_alpaca(&rec)))
}

async fn list_orders(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let model = read(&state);
    let q = trading::parse_list_query(&model, &query)?;
    let orders = trading::list_orders(&model, account, &q);
    Ok(Json(Value::Array(
        orders.iter().map(|o| model.order_alpaca(o)).collect(),
    )))
}

async fn get_order(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let order = trading::owned_order(&state, account, &id)?;
    Ok(Json(read(&state).order_alpaca(&order)))
}

async fn by_client_order_id(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let cid = query
        .get("client_order_id")
        .ok_or_else(|| ApiError::unprocessable("missing_field", "missing `client_order_id`"))?;
    let model = read(&state);
    let order = model
        .client_ids
        .get(&(account, cid.clone()))
        .and_then(|id| model.orders.get(id))
        .ok_or_else(|| ApiError::not_found("order_not_found", "no such order"))?;
    Ok(Json(model.order_alpaca(order)))
}

async fn replace(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let order = trading::owned_order(&state, account, &id)?;
    let rec = trading::replace_order(&state, account, &order, &body, &request_id).await?;
    Ok(Json(read(&state).order_alpaca(&rec)))
}

async fn cancel_one(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let account = auth.account()?;
    let order = trading::owned_order(&state, account, &id)?;
    trading::cancel_order(&state, account, &order, request_id.1).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_all(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
) -> ApiResult<Response> {
    let account = auth.account()?;
    let cancelled = trading::cancel_everything(&state, account, request_id.1).await?;
    let model = read(&state);
    let body: Vec<Value> = cancelled
        .iter()
        .map(|o| json!({"id": o.uuid(), "status": 200, "body": model.order_alpaca(o)}))
        .collect();
    Ok((StatusCode::MULTI_STATUS, Json(Value::Array(body))).into_response())
}

fn position_json(p: &trading::PositionView) -> Value {
    let market = p.market_value() as i128;
    let cost = p.cost as i128;
    let pl = market - cost;
    let plpc = if cost > 0 {
        pl as f64 / cost as f64
    } else {
        0.0
    };
    json!({
        "asset_id": asset_uuid(p.symbol),
        "symbol": p.name,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": false,
        "avg_entry_price": format_money(p.avg_cost()),
        "qty": format_qty(p.qty),
        "qty_available": format_qty(p.available),
        "side": "long",
        "market_value": format_signed(market),
        "cost_basis": format_signed(cost),
        "unrealized_pl": format_signed(pl),
        "unrealized_plpc": format!("{plpc:.4}"),
        "unrealized_intraday_pl": format_signed(pl),
        "unrealized_intraday_plpc": format!("{plpc:.4}"),
        "current_price": format_money(p.price),
        "lastday_price": format_money(p.price),
        "change_today": "0",
    })
}

async fn positions(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let model = read(&state);
    Ok(Json(Value::Array(
        trading::positions(&model, account)
            .iter()
            .map(position_json)
            .collect(),
    )))
}

async fn position(
    State(state): State<AppState>,
    auth: Auth,
    Path(symbol): Path<String>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let model = read(&state);
    trading::positions(&model, account)
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(&symbol))
        .map(|p| Json(position_json(p)))
        .ok_or_else(|| ApiError::not_found("position_not_found", "position does not exist"))
}

fn asset_json(s: &crate::projection::SymbolInfo) -> Value {
    json!({
        "id": asset_uuid(s.id),
        "class": "us_equity",
        "exchange": "NASDAQ",
        "symbol": s.name,
        "name": s.name,
        "status": "active",
        "tradable": !s.halted,
        "marginable": false,
        "shortable": false,
        "easy_to_borrow": false,
        "fractionable": false,
        "min_order_size": format_qty(s.lot),
        "min_trade_increment": format_qty(s.lot),
        "price_increment": format_money(s.tick),
        "attributes": [],
    })
}

async fn assets(State(state): State<AppState>, _auth: Auth) -> Json<Value> {
    let model = read(&state);
    Json(Value::Array(
        model.symbols.values().map(asset_json).collect(),
    ))
}

async fn asset(
    State(state): State<AppState>,
    _auth: Auth,
    Path(symbol): Path<String>,
) -> ApiResult<Json<Value>> {
    let model = read(&state);
    model
        .symbols
        .values()
        .find(|s| s.name.eq_ignore_ascii_case(&symbol))
        .map(|s| Json(asset_json(s)))
        .ok_or_else(|| ApiError::not_found("asset_not_found", "asset not found"))
}

async fn clock(_auth: Auth) -> Json<Value> {
    let now = crate::time::now_ns();
    let day = 86_400 * 1_000_000_000u64;
    Json(json!({
        "timestamp": crate::time::rfc3339(now),
        "is_open": true,
        "next_open": crate::time::rfc3339(now - now % day + day),
        "next_close": crate::time::rfc3339(now - now % day + day - 1_000_000_000),
    }))
}

fn alpaca_activity(account: u32, mut v: Value) -> Value {
    v["account_id"] = json!(account_uuid(account));
    if v["activity_type"] == "FILL" {
        v["cum_qty"] = v["qty"].clone();
        v["order_status"] = json!(if v["type"] == "fill" {
            "filled"
        } else {
            "partially_filled"
        });
    } else {
        v["date"] = json!(v["timestamp"].as_str().map(|t| t[..10].to_string()));
        v["status"] = json!("executed");
    }
    v
}

async fn activities_inner(
    state: AppState,
    auth: Auth,
    kinds: Vec<String>,
    query: HashMap<String, String>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let limit = match query.get("page_size") {
        None => 100,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable("invalid_parameter", "`page_size` must be 1 to 100")
            })?,
    };
    let before = query
        .get("page_token")
        .map(|t| trading::parse_activity_cursor(t))
        .transpose()?;
    let list = trading::load_activities(&state, account, kinds, limit, before).await?;
    Ok(Json(Value::Array(
        list.into_iter()
            .map(|a| alpaca_activity(account, a))
            .collect(),
    )))
}

async fn activities(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let kinds = query
        .get("activity_types")
        .map(|t| t.split(',').map(str::to_ascii_uppercase).collect())
        .unwrap_or_default();
    activities_inner(state, auth, kinds, query).await
}

async fn activities_of_kind(
    State(state): State<AppState>,
    auth: Auth,
    Path(kind): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    activities_inner(state, auth, vec![kind.to_ascii_uppercase()], query).await
}
