//! UC-04 (symbols, quotes, depth, trades), UC-05/06 (place, get, list,
//! replace, cancel, cancel all), portfolio and activities. The handlers
//! build engine commands; what they return is read from the read model,
//! which the bridge has updated before the reply arrives.

use crate::app::{AppState, Auth, JsonBody, RequestId};
use crate::crypto::{order_uuid, parse_order_uuid};
use crate::error::{ApiError, ApiResult};
use crate::money::{format_money, format_qty, format_signed, parse_money, parse_qty};
use crate::projection::{OrderRec, State as Model, Status};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use brokerx_engine::pipeline::Output;
use brokerx_engine::{
    AccountId, Command, Event, OrderId, OrderType, RejectCode, SelfTradePrevention, Side, SymbolId,
    TimeInForce,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::RwLockReadGuard;

pub fn read(state: &AppState) -> RwLockReadGuard<'_, Model> {
    state.bridge.state.read().unwrap_or_else(|e| e.into_inner())
}

/// An engine reject as a 4xx with a specific code.
pub fn reject_error(code: RejectCode) -> ApiError {
    let name = match code {
        RejectCode::UnknownAccount => "unknown_account",
        RejectCode::AccountSuspended => "account_suspended",
        RejectCode::InsufficientFunds => "insufficient_funds",
        RejectCode::InsufficientShares => "insufficient_shares",
        RejectCode::MaxOrderQuantityExceeded => "max_order_quantity_exceeded",
        RejectCode::MaxOrderNotionalExceeded => "max_order_notional_exceeded",
        RejectCode::MaxOpenOrdersExceeded => "max_open_orders_exceeded",
        RejectCode::InvalidAmount => "invalid_amount",
        RejectCode::AmountOverflow => "amount_overflow",
        RejectCode::UnknownSymbol => "unknown_symbol",
        RejectCode::SymbolHalted => "symbol_halted",
        RejectCode::InvalidPrice => "invalid_price",
        RejectCode::InvalidQuantity => "invalid_quantity",
        RejectCode::PriceOutsideBand => "price_outside_band",
        RejectCode::UnknownOrder | RejectCode::NotOrderOwner => {
            return ApiError::not_found("order_not_found", "unknown or closed order")
        }
        RejectCode::BookCapacityExceeded => {
            return ApiError::unavailable("the engine's order capacity is exhausted")
        }
        _ => "rejected",
    };
    let status = if matches!(
        code,
        RejectCode::InsufficientFunds | RejectCode::InsufficientShares
    ) {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    ApiError::new(status, name, code.name()).with_extra(json!({"reject_code": code.code()}))
}

fn symbol_id(model: &Model, name: &str) -> ApiResult<u32> {
    model
        .by_name
        .get(&name.to_ascii_uppercase())
        .copied()
        .ok_or_else(|| ApiError::not_found("unknown_symbol", format!("unknown symbol {name:?}")))
}

fn query_usize(
    query: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> ApiResult<usize> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::unprocessable(
                "invalid_parameter",
                format!("`{name}` must be an integer from 1 to {max}"),
            )),
        },
    }
}

// ---- market data ----

/// GET /api/v1/symbols
#[utoipa::path(
    get,
    path = "/symbols",
    tag = "market data",
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn symbols(State(state): State<AppState>) -> Json<Value> {
    let model = read(&state);
    Json(Value::Array(
        model
            .symbols
            .values()
            .map(|s| {
                json!({
                    "symbol": s.name,
                    "id": s.id,
                    "tick_size": format_money(s.tick),
                    "lot_size": format_qty(s.lot),
                    "reference_price": format_money(s.reference),
                    "band_low": format_money(s.band_low),
                    "band_high": format_money(s.band_high),
                    "halted": s.halted,
                })
            })
            .collect(),
    ))
}

/// GET /api/v1/market/{symbol}/quote
#[utoipa::path(
    get,
    path = "/market/{symbol}/quote",
    tag = "market data",
    params(("symbol" = String, Path)),
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn quote(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
) -> ApiResult<Json<Value>> {
    let model = read(&state);
    let id = symbol_id(&model, &symbol)?;
    Ok(Json(model.quote(id)))
}

/// GET /api/v1/market/{symbol}/depth?levels=N
#[utoipa::path(
    get,
    path = "/market/{symbol}/depth",
    tag = "market data",
    params(("symbol" = String, Path), ("levels" = Option<u32>, Query)),
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn depth(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let levels = query_usize(&query, "levels", 10, 1000)?;
    let model = read(&state);
    let id = symbol_id(&model, &symbol)?;
    let book = model.books.get(&id).cloned().unwrap_or_default();
    let level = |(price, (qty, orders)): (&u64, &(u64, u32))| json!({"price": format_money(*price), "qty": format_qty(*qty), "orders": orders});
    Ok(Json(json!({
        "symbol": model.symbol_name(id),
        "bids": book.bids.iter().rev().take(levels).map(level).collect::<Vec<_>>(),
        "asks": book.asks.iter().take(levels).map(level).collect::<Vec<_>>(),
        "seq": model.last_seq,
    })))
}

/// GET /api/v1/market/{symbol}/trades?limit=N
#[utoipa::path(
    get,
    path = "/market/{symbol}/trades",
    tag = "market data",
    params(("symbol" = String, Path), ("limit" = Option<u32>, Query)),
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
pub async fn trades(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let limit = query_usize(&query, "limit", 50, 200)?;
    let model = read(&state);
    let id = symbol_id(&model, &symbol)?;
    let name = model.symbol_name(id);
    let list: Vec<Value> = model
        .trades
        .get(&id)
        .map(|ring| {
            ring.iter()
                .rev()
                .take(limit)
                .map(|t| t.to_json(&name))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(Value::Array(list)))
}

// ---- orders ----

pub struct NewOrder {
    pub symbol: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub price: u64,
    pub qty: u64,
    pub client_order_id: Option<String>,
}

fn enum_field<T: Copy>(
    body: &JsonBody,
    field: &str,
    default: Option<T>,
    options: &[(&str, T)],
) -> ApiResult<T> {
    let text = match body.opt_str(field)? {
        Some(text) => text.to_ascii_lowercase(),
        None => {
            return default.ok_or_else(|| {
                ApiError::unprocessable("missing_field", format!("missing field `{field}`"))
            })
        }
    };
    options
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            ApiError::unprocessable(
                "invalid_field",
                format!("`{field}` must be one of {}", names.join(", ")),
            )
        })
}

fn check_client_order_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::unprocessable(
            "invalid_client_order_id",
            "client_order_id must be 1 to 64 printable ASCII characters",
        ));
    }
    Ok(())
}

fn check_price(model: &Model, symbol: u32, price: u64) -> ApiResult<()> {
    let spec = &model.symbols[&symbol];
    if price == 0 {
        return Err(ApiError::unprocessable(
            "invalid_price",
            "limit_price must be positive",
        ));
    }
    if !price.is_multiple_of(spec.tick) {
        return Err(ApiError::unprocessable(
            "invalid_price",
            format!(
                "limit_price must be a multiple of the tick size {}",
                format_money(spec.tick)
            ),
        ));
    }
    Ok(())
}

fn check_qty(model: &Model, symbol: u32, qty: u64) -> ApiResult<()> {
    let spec = &model.symbols[&symbol];
    if qty == 0 {
        return Err(ApiError::unprocessable(
            "invalid_quantity",
            "qty must be positive",
        ));
    }
    if !qty.is_multiple_of(spec.lot) {
        return Err(ApiError::unprocessable(
            "invalid_quantity",
            format!("qty must be a multiple of the lot size {}", spec.lot),
        ));
    }
    Ok(())
}

pub fn parse_new_order(model: &Model, body: &JsonBody) -> ApiResult<NewOrder> {
    let symbol = symbol_id(model, body.str("symbol")?)
        .map_err(|e| ApiError::unprocessable("unknown_symbol", e.message))?;
    let side = enum_field(
        body,
        "side",
        None,
        &[("buy", Side::Buy), ("sell", Side::Sell)],
    )?;
    let order_type = enum_field(
        body,
        "type",
        Some(OrderType::Limit),
        &[("limit", OrderType::Limit), ("market", OrderType::Market)],
    )?;
    let tif = enum_field(
        body,
        "time_in_force",
        Some(TimeInForce::Day),
        &[
            ("day", TimeInForce::Day),
            ("gtc", TimeInForce::Gtc),
            ("ioc", TimeInForce::Ioc),
            ("fok", TimeInForce::Fok),
        ],
    )?;
    if body.opt_value("notional").is_some() {
        return Err(ApiError::unprocessable(
            "unsupported",
            "notional orders are not supported",
        ));
    }
    let qty = parse_qty(body.value("qty")?)
        .map_err(|e| ApiError::unprocessable("invalid_quantity", format!("qty: {e}")))?;
    check_qty(model, symbol, qty)?;
    let price = match (order_type, body.opt_value("limit_price")) {
        (OrderType::Limit, Some(value)) => {
            let price = parse_money(value).map_err(|e| {
                ApiError::unprocessable("invalid_price", format!("limit_price: {e}"))
            })?;
            check_price(model, symbol, price)?;
            price
        }
        (OrderType::Limit, None) => {
            return Err(ApiError::unprocessable(
                "missing_field",
                "a limit order needs `limit_price`",
            ))
        }
        (OrderType::Market, Some(_)) => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "a market order takes no `limit_price`",
            ))
        }
        (OrderType::Market, None) => 0,
    };
    for field in ["stop_price", "trail_price", "trail_percent"] {
        if body.opt_value(field).is_some() {
            return Err(ApiError::unprocessable(
                "unsupported",
                format!("`{field}` is not supported"),
            ));
        }
    }
    let client_order_id = body.opt_str("client_order_id")?.map(str::to_string);
    if let Some(id) = &client_order_id {
        check_client_order_id(id)?;
    }
    Ok(NewOrder {
        symbol,
        side,
        order_type,
        tif,
        price,
        qty,
        client_order_id,
    })
}

fn first_reject(outputs: &[Output]) -> Option<RejectCode> {
    outputs.iter().find_map(|o| match o.event {
        Event::Rejected { code, .. } => Some(code),
        _ => None,
    })
}

/// Places an order and returns it as the read model holds it after the
/// command (possibly already filled).
pub async fn place_order(
    state: &AppState,
    account: u32,
    order: NewOrder,
    request: &RequestId,
) -> ApiResult<OrderRec> {
    let (request_id, tag) = (request.0.as_str(), request.1);
    let client_id = order.client_order_id.clone();
    if let Some(cid) = &client_id {
        let mut model = state
            .bridge
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let key = (account, cid.clone());
        if model.client_ids.contains_key(&key) {
            return Err(ApiError::unprocessable(
                "duplicate_client_order_id",
                "client_order_id must be unique per account",
            ));
        }
        model.client_ids.insert(key, 0);
        model.pending_client_ids.insert(tag, cid.clone());
    }
    {
        let now = crate::time::now_ns();
        let draft = OrderRec {
            id: 0xffff_ffff_0000_0000 | (tag & 0xffff_ffff),
            account,
            symbol: order.symbol,
            side: order.side,
            order_type: order.order_type,
            tif: order.tif,
            limit_price: order.price,
            hold_price: order.price,
            qty: order.qty,
            leaves: 0,
            filled: 0,
            filled_notional: 0,
            status: Status::New,
            client_order_id: client_id
                .clone()
                .unwrap_or_else(|| order_uuid(0xffff_ffff_0000_0000 | (tag & 0xffff_ffff))),
            created_ns: now,
            updated_ns: now,
            filled_ns: 0,
            canceled_ns: 0,
            replaced_ns: 0,
            reason: None,
        };
        state
            .bridge
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .pending_orders
            .insert(tag, draft);
    }
    let release_cid = |state: &AppState| {
        let mut model = state
            .bridge
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner());
        model.pending_orders.remove(&tag);
        if let Some(cid) = &client_id {
            let key = (account, cid.clone());
            if model.client_ids.get(&key) == Some(&0) {
                model.client_ids.remove(&key);
            }
            model.pending_client_ids.remove(&tag);
        }
    };
    // The client's id is not in the journal (the engine tag is a number):
    // it is written to SQLite while the engine works, and the answer waits
    // for both, so that an order acknowledged just before a crash comes
    // back with it and a retry with the same id is still refused.
    let intent = client_id
        .clone()
        .map(|cid| state.bridge.record_intent(tag, account, cid));
    let command = Command::NewOrder {
        account: AccountId(account),
        symbol: SymbolId(order.symbol),
        side: order.side,
        order_type: order.order_type,
        tif: order.tif,
        price: order.price,
        qty: order.qty,
        self_trade: SelfTradePrevention::AccountDefault,
        tag,
    };
    let outputs = state.bridge.request(command).await;
    if let Some(intent) = intent {
        if !intent.await.unwrap_or(false) {
            // The order stands (if accepted); only its client id would not
            // survive a crash. The store's failure is logged where it is.
            tracing::error!(
                gateway = "rest",
                request_id = %request_id,
                tag,
                "client order id not recorded"
            );
        }
    }
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(e) => {
            if client_id.is_some() && matches!(e, crate::bridge::RequestError::Busy) {
                // Never submitted. (After a timeout the command may be in
                // the journal: that record stays for the next start.)
                state.bridge.forget_intent(tag);
            }
            release_cid(state);
            return Err(e.into());
        }
    };
    if let Some(code) = first_reject(&outputs) {
        release_cid(state);
        tracing::info!(
            gateway = "rest",
            request_id = %request_id,
            tag,
            seq = outputs.first().map(|o| o.seq),
            account,
            reason = code.name(),
            "order rejected"
        );
        return Err(reject_error(code));
    }
    let order_id = outputs.iter().find_map(|o| match o.event {
        Event::OrderAccepted { order_id, .. } => Some(order_id.0),
        _ => None,
    });
    let trades: Vec<u64> = outputs
        .iter()
        .filter_map(|o| match o.event {
            Event::Trade { match_id, .. } => Some(match_id),
            _ => None,
        })
        .collect();
    let Some(order_id) = order_id else {
        release_cid(state);
        return Err(ApiError::internal("no acknowledgement from the engine"));
    };
    tracing::info!(
        gateway = "rest",
        request_id = %request_id,
        tag,
        seq = outputs[0].seq,
        account,
        order_id = %order_uuid(order_id),
        trades = ?trades,
        "order accepted"
    );
    read(state)
        .orders
        .get(&order_id)
        .cloned()
        .ok_or_else(|| ApiError::internal("order missing from the read model"))
}

/// POST /api/v1/orders
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    request_body = crate::openapi::OrderRequest,
    responses((status = 201, description = "success", body = crate::openapi::Order), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn place(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    body: JsonBody,
) -> ApiResult<Response> {
    let account = auth.account()?;
    let order = parse_new_order(&read(&state), &body)?;
    let rec = place_order(&state, account, order, &request_id).await?;
    let body = read(&state).order_json(&rec);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The caller's order by UUID, else 404 (also for another client's order).
pub fn owned_order(state: &AppState, account: u32, id: &str) -> ApiResult<OrderRec> {
    let not_found = || ApiError::not_found("order_not_found", "no such order");
    let order_id = parse_order_uuid(id).ok_or_else(not_found)?;
    let model = read(state);
    model
        .orders
        .get(&order_id)
        .filter(|o| o.account == account)
        .cloned()
        .ok_or_else(not_found)
}

/// GET /api/v1/orders/{id}
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, description = "success", body = crate::openapi::Order), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn get_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let order = owned_order(&state, account, &id)?;
    Ok(Json(read(&state).order_json(&order)))
}

/// Filters for listing orders.
pub struct ListQuery {
    pub status: String,
    pub symbols: Vec<u32>,
    pub side: Option<Side>,
    pub limit: usize,
    pub after: Option<u64>,
    pub ascending: bool,
}

pub fn parse_list_query(model: &Model, query: &HashMap<String, String>) -> ApiResult<ListQuery> {
    let status = query
        .get("status")
        .map_or("open", String::as_str)
        .to_string();
    if !matches!(status.as_str(), "open" | "closed" | "all") {
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            "`status` must be open, closed or all",
        ));
    }
    let mut symbols = Vec::new();
    for key in ["symbol", "symbols"] {
        if let Some(list) = query.get(key) {
            for name in list.split(',').filter(|s| !s.is_empty()) {
                symbols.push(
                    symbol_id(model, name)
                        .map_err(|e| ApiError::unprocessable("unknown_symbol", e.message))?,
                );
            }
        }
    }
    let side = match query.get("side").map(String::as_str) {
        None => None,
        Some("buy") => Some(Side::Buy),
        Some("sell") => Some(Side::Sell),
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_parameter",
                "`side` must be buy or sell",
            ))
        }
    };
    let limit = query_usize(query, "limit", 50, 500)?;
    let after = match query.get("after_id").or(query.get("page_token")) {
        None => None,
        Some(text) => Some(parse_order_uuid(text).ok_or_else(|| {
            ApiError::unprocessable("invalid_parameter", "`page_token` must be an order id")
        })?),
    };
    let ascending = match query.get("direction").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_parameter",
                "`direction` must be asc or desc",
            ))
        }
    };
    Ok(ListQuery {
        status,
        symbols,
        side,
        limit,
        after,
        ascending,
    })
}

pub fn list_orders(model: &Model, account: u32, q: &ListQuery) -> Vec<OrderRec> {
    let Some(ids) = model.account_orders.get(&account) else {
        return Vec::new();
    };
    let mut ids: Vec<u64> = ids.clone();
    if !q.ascending {
        ids.reverse();
    }
    let mut skipping = q.after.is_some();
    let mut out = Vec::new();
    for id in ids {
        if skipping {
            if Some(id) == q.after {
                skipping = false;
            }
            continue;
        }
        let Some(order) = model.orders.get(&id) else {
            continue;
        };
        let keep = match q.status.as_str() {
            "open" => order.status.is_open(),
            "closed" => !order.status.is_open(),
            _ => true,
        } && (q.symbols.is_empty() || q.symbols.contains(&order.symbol))
            && q.side.is_none_or(|s| s == order.side);
        if keep {
            out.push(order.clone());
            if out.len() == q.limit {
                break;
            }
        }
    }
    out
}

/// GET /api/v1/orders?status=open|closed|all&symbol=&side=&limit=&page_token=&direction=
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(("status" = Option<String>, Query, description = "open | closed | all"), ("symbol" = Option<String>, Query), ("side" = Option<String>, Query), ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query), ("direction" = Option<String>, Query)),
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let model = read(&state);
    let q = parse_list_query(&model, &query)?;
    let orders = list_orders(&model, account, &q);
    let next = (orders.len() == q.limit)
        .then(|| orders.last().map(|o| o.uuid()))
        .flatten();
    Ok(Json(json!({
        "orders": orders.iter().map(|o| model.order_json(o)).collect::<Vec<_>>(),
        "next_page_token": next,
    })))
}

/// Replaces price and/or quantity (`qty` is the new total quantity).
pub async fn replace_order(
    state: &AppState,
    account: u32,
    order: &OrderRec,
    body: &JsonBody,
    request: &RequestId,
) -> ApiResult<OrderRec> {
    let (request_id, tag) = (request.0.as_str(), request.1);
    if !order.status.is_open() {
        return Err(ApiError::unprocessable(
            "order_not_open",
            "the order is no longer open",
        ));
    }
    if order.order_type == OrderType::Market {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "a market order cannot be replaced",
        ));
    }
    let qty_value = body.opt_value("qty");
    let price_value = body.opt_value("limit_price");
    if qty_value.is_none() && price_value.is_none() {
        return Err(ApiError::unprocessable(
            "missing_field",
            "give `qty` and/or `limit_price`",
        ));
    }
    for field in ["stop_price", "trail", "time_in_force"] {
        if body.opt_value(field).is_some() && field != "time_in_force" {
            return Err(ApiError::unprocessable(
                "unsupported",
                format!("`{field}` is not supported"),
            ));
        }
    }
    let (total, price) = {
        let model = read(state);
        let total = match qty_value {
            Some(v) => {
                let qty = parse_qty(v).map_err(|e| {
                    ApiError::unprocessable("invalid_quantity", format!("qty: {e}"))
                })?;
                check_qty(&model, order.symbol, qty)?;
                qty
            }
            None => order.qty,
        };
        let price = match price_value {
            Some(v) => {
                let price = parse_money(v).map_err(|e| {
                    ApiError::unprocessable("invalid_price", format!("limit_price: {e}"))
                })?;
                check_price(&model, order.symbol, price)?;
                price
            }
            None => order.limit_price,
        };
        (total, price)
    };
    if total <= order.filled {
        return Err(ApiError::unprocessable(
            "invalid_quantity",
            "qty must exceed the quantity already filled",
        ));
    }
    let outputs = state
        .bridge
        // By total quantity: the engine takes off what the order has
        // filled by the time it applies it, fills in flight included.
        .request(Command::ReplaceTotal {
            account: AccountId(account),
            order_id: OrderId(order.id),
            price,
            qty: total,
            tag,
        })
        .await?;
    if let Some(code) = first_reject(&outputs) {
        return Err(reject_error(code));
    }
    tracing::info!(
        gateway = "rest",
        request_id = %request_id,
        tag,
        seq = outputs.first().map(|o| o.seq),
        order_id = %order.uuid(),
        "order replaced"
    );
    read(state)
        .orders
        .get(&order.id)
        .cloned()
        .ok_or_else(|| ApiError::internal("order missing from the read model"))
}

/// PATCH /api/v1/orders/{id} {qty?, limit_price?}
#[utoipa::path(
    patch,
    path = "/orders/{id}",
    tag = "orders",
    request_body = crate::openapi::ReplaceRequest,
    params(("id" = String, Path)),
    responses((status = 200, description = "success", body = crate::openapi::Order), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn replace(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let order = owned_order(&state, account, &id)?;
    let rec = replace_order(&state, account, &order, &body, &request_id).await?;
    Ok(Json(read(&state).order_json(&rec)))
}

/// `tag`: the request's engine tag ([`RequestId`]).
pub async fn cancel_order(
    state: &AppState,
    account: u32,
    order: &OrderRec,
    tag: u64,
) -> ApiResult<OrderRec> {
    if !order.status.is_open() {
        return Err(ApiError::unprocessable(
            "order_not_open",
            "the order is no longer open",
        ));
    }
    let outputs = state
        .bridge
        .request(Command::Cancel {
            account: AccountId(account),
            order_id: OrderId(order.id),
            tag,
        })
        .await?;
    if let Some(code) = first_reject(&outputs) {
        return Err(reject_error(code));
    }
    read(state)
        .orders
        .get(&order.id)
        .cloned()
        .ok_or_else(|| ApiError::internal("order missing from the read model"))
}

/// DELETE /api/v1/orders/{id}
#[utoipa::path(
    delete,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, description = "success", body = crate::openapi::Order), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn cancel_one(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let order = owned_order(&state, account, &id)?;
    let rec = cancel_order(&state, account, &order, request_id.1).await?;
    Ok(Json(read(&state).order_json(&rec)))
}

/// Cancels every open order of the account: the cancelled orders. `tag`:
/// the request's engine tag.
pub async fn cancel_everything(
    state: &AppState,
    account: u32,
    tag: u64,
) -> ApiResult<Vec<OrderRec>> {
    let outputs = state
        .bridge
        .request(Command::MassCancelAccount {
            account: AccountId(account),
            symbol: None,
            tag,
        })
        .await?;
    if let Some(code) = first_reject(&outputs) {
        return Err(reject_error(code));
    }
    let model = read(state);
    Ok(outputs
        .iter()
        .filter_map(|o| match o.event {
            Event::OrderCancelled { order_id, .. } => model.orders.get(&order_id.0).cloned(),
            _ => None,
        })
        .collect())
}

/// DELETE /api/v1/orders
#[utoipa::path(
    delete,
    path = "/orders",
    tag = "orders",
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn cancel_all(
    State(state): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let cancelled = cancel_everything(&state, account, request_id.1).await?;
    let model = read(&state);
    Ok(Json(json!({
        "cancelled": cancelled.iter().map(|o| model.order_json(o)).collect::<Vec<_>>(),
    })))
}

// ---- portfolio ----

pub struct PositionView {
    pub symbol: u32,
    pub name: String,
    pub qty: u64,
    pub available: u64,
    pub reserved: u64,
    pub cost: u128,
    pub price: u64,
}

impl PositionView {
    pub fn avg_cost(&self) -> u64 {
        if self.qty == 0 {
            0
        } else {
            (self.cost / self.qty as u128) as u64
        }
    }

    pub fn market_value(&self) -> u128 {
        self.qty as u128 * self.price as u128
    }
}

/// The mark of a symbol: last trade, else the reference price.
pub fn mark(model: &Model, symbol: u32) -> u64 {
    model
        .trades
        .get(&symbol)
        .and_then(|t| t.back())
        .map(|t| t.price)
        .or_else(|| model.symbols.get(&symbol).map(|s| s.reference))
        .unwrap_or(0)
}

pub fn positions(model: &Model, account: u32) -> Vec<PositionView> {
    let Some(state) = model.accounts.get(&account) else {
        return Vec::new();
    };
    state
        .positions
        .iter()
        .filter(|(_, p)| p.total() > 0)
        .map(|(symbol, p)| PositionView {
            symbol: *symbol,
            name: model.symbol_name(*symbol),
            qty: p.total(),
            available: p.available,
            reserved: p.reserved,
            cost: p.cost,
            price: mark(model, *symbol),
        })
        .collect()
}

/// GET /api/v1/portfolio
#[utoipa::path(
    get,
    path = "/portfolio",
    tag = "portfolio",
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn portfolio(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let model = read(&state);
    let cash = model
        .accounts
        .get(&account)
        .map(|a| a.cash)
        .unwrap_or_default();
    let positions = positions(&model, account);
    let market: u128 = positions.iter().map(PositionView::market_value).sum();
    let total_cash = cash.available as u128 + cash.reserved as u128;
    Ok(Json(json!({
        "account_id": account,
        "cash": {
            "available": format_money(cash.available),
            "reserved": format_money(cash.reserved),
            "total": format_money(total_cash.min(u64::MAX as u128) as u64),
        },
        "positions": positions.iter().map(|p| json!({
            "symbol": p.name,
            "qty": format_qty(p.qty),
            "available": format_qty(p.available),
            "reserved": format_qty(p.reserved),
            "avg_cost": format_money(p.avg_cost()),
            "cost_basis": format_money(p.cost.min(u64::MAX as u128) as u64),
            "price": format_money(p.price),
            "market_value": format_money(p.market_value().min(u64::MAX as u128) as u64),
            "unrealized_pl": format_signed(p.market_value() as i128 - p.cost as i128),
        })).collect::<Vec<_>>(),
        "equity": format_money((total_cash + market).min(u64::MAX as u128) as u64),
    })))
}

/// Activities of an account, newest first: (cursor, body).
pub async fn load_activities(
    state: &AppState,
    account: u32,
    kinds: Vec<String>,
    limit: usize,
    before: Option<(i64, i64)>,
) -> ApiResult<Vec<Value>> {
    let rows: Vec<Value> = state
        .db
        .call(move |c| -> Result<Vec<Value>, rusqlite::Error> {
            let (seq, idx) = before.unwrap_or((i64::MAX, i64::MAX));
            let mut statement = c.prepare(
                "SELECT body, kind FROM activities WHERE account = ?1 AND (seq < ?2 OR (seq = ?2 AND idx < ?3))
                 ORDER BY seq DESC, idx DESC LIMIT ?4",
            )?;
            let rows = statement.query_map(
                rusqlite::params![account, seq, idx, (limit * 4 + 16) as i64],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (body, kind) = row?;
                if !kinds.is_empty() && !kinds.contains(&kind) {
                    continue;
                }
                if let Ok(value) = serde_json::from_str(&body) {
                    out.push(value);
                }
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
        .await??;
    Ok(rows)
}

pub fn parse_activity_cursor(text: &str) -> ApiResult<(i64, i64)> {
    let mut parts = text.split(':');
    match (
        parts.next().and_then(|s| s.parse().ok()),
        parts.next().and_then(|s| s.parse().ok()),
    ) {
        (Some(seq), Some(idx)) => Ok((seq, idx)),
        _ => Err(ApiError::unprocessable(
            "invalid_parameter",
            "invalid `page_token`",
        )),
    }
}

/// GET /api/v1/activities?type=FILL,CSD&limit=&page_token=
#[utoipa::path(
    get,
    path = "/activities",
    tag = "portfolio",
    params(("type" = Option<String>, Query), ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, description = "success"), (status = "4XX", description = "problem+json error", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key_id" = [], "api_key_secret" = []))
)]
pub async fn activities(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let account = auth.account()?;
    let limit = query_usize(&query, "limit", 50, 500)?;
    let kinds: Vec<String> = query
        .get("type")
        .map(|t| t.split(',').map(str::to_ascii_uppercase).collect())
        .unwrap_or_default();
    let before = query
        .get("page_token")
        .map(|t| parse_activity_cursor(t))
        .transpose()?;
    let list = load_activities(&state, account, kinds, limit, before).await?;
    Ok(Json(json!({"activities": list})))
}

pub fn status_is(order: &OrderRec, status: Status) -> bool {
    order.status == status
}

pub fn alpaca_router() -> axum::Router<AppState> {
    crate::alpaca::router()
}
