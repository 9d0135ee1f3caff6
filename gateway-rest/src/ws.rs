//! UC-08: WebSocket streams. `/api/v1/ws` (BrokerX shape, resumable by
//! sequence number) and `/stream` (Alpaca's `trade_updates` protocol).
//!
//! BrokerX protocol (JSON text frames):
//! - client: `{"action":"auth","token":JWT}` or
//!   `{"action":"auth","key_id":..,"secret_key":..}` (or an Authorization
//!   header on the upgrade request);
//! - client: `{"action":"subscribe","streams":["trade_updates","quotes"],"resume_from":N}`;
//! - server: `{"stream":"trade_updates","seq":N,"data":{...}}`, with `seq`
//!   per account, gap-free: after `resume_from: N` the next is `N + 1`.

use crate::app::{authenticate, AppState};
use crate::projection::{StreamItem, QUOTES};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn api_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let pre_auth = authenticate(&state, &headers).ok().and_then(|a| a.account);
    upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| session(state, socket, pre_auth, false))
}

pub async fn alpaca_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let pre_auth = authenticate(&state, &headers).ok().and_then(|a| a.account);
    upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| session(state, socket, pre_auth, true))
}

async fn send(socket: &mut WebSocket, value: Value) -> bool {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .is_ok()
}

async fn send_text(socket: &mut WebSocket, text: &str) -> bool {
    socket
        .send(Message::Text(text.to_string().into()))
        .await
        .is_ok()
}

async fn next_json(socket: &mut WebSocket) -> Option<Result<Value, String>> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(text)) => {
                return Some(
                    serde_json::from_str(&text).map_err(|e| format!("malformed JSON: {e}")),
                )
            }
            Ok(Message::Binary(bytes)) => {
                return Some(
                    serde_json::from_slice(&bytes).map_err(|e| format!("malformed JSON: {e}")),
                )
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

fn auth_from_message(state: &AppState, message: &Value) -> Option<u32> {
    let mut headers = HeaderMap::new();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| {
                message
                    .get(n)
                    .or_else(|| message.get("data").and_then(|d| d.get(n)))
            })
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(token) = field(&["token"]) {
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).ok()?,
        );
    } else {
        let key = field(&["key_id", "key", "key_id"])?;
        let secret = field(&["secret_key", "secret"])?;
        headers.insert("apca-api-key-id", HeaderValue::from_str(&key).ok()?);
        headers.insert("apca-api-secret-key", HeaderValue::from_str(&secret).ok()?);
    }
    authenticate(state, &headers).ok()?.account
}

/// Messages of `account` with seq > `after`, from memory or the store.
async fn backlog(state: &AppState, account: u32, after: u64) -> Vec<StreamItem> {
    let (ring, first_in_memory) = {
        let model = state.bridge.state.read().unwrap_or_else(|e| e.into_inner());
        let ring: Vec<StreamItem> = model
            .streams
            .get(&account)
            .map(|r| r.iter().filter(|i| i.seq > after).cloned().collect())
            .unwrap_or_default();
        let first = model
            .streams
            .get(&account)
            .and_then(|r| r.front())
            .map(|i| i.seq);
        (ring, first)
    };
    let need_store = match first_in_memory {
        Some(first) => first > after + 1,
        None => true,
    };
    if !need_store {
        return ring;
    }
    let until = first_in_memory.unwrap_or(u64::MAX);
    let stored: Vec<(i64, String)> = state
        .db
        .call(move |c| -> Result<Vec<(i64, String)>, rusqlite::Error> {
            c.prepare("SELECT seq, body FROM stream WHERE account = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq LIMIT 100000")?
                .query_map(
                    rusqlite::params![account, after as i64, until.min(i64::MAX as u64) as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect()
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut items: Vec<StreamItem> = stored
        .into_iter()
        .map(|(seq, body)| StreamItem {
            account,
            seq: seq as u64,
            body: body.into(),
            alpaca: None,
        })
        .collect();
    items.extend(ring);
    items
}

/// Counts a connected `/stream` client while it lives.
struct AlpacaListener(AppState);

impl AlpacaListener {
    fn new(state: &AppState) -> AlpacaListener {
        state
            .bridge
            .alpaca_listeners
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        AlpacaListener(state.clone())
    }
}

impl Drop for AlpacaListener {
    fn drop(&mut self) {
        self.0
            .bridge
            .alpaca_listeners
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Counts a connected WebSocket in the REST sessions gauge while it lives.
struct Connected;

impl Connected {
    fn new() -> Connected {
        crate::app::surface().sessions.inc();
        Connected
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        crate::app::surface().sessions.dec();
    }
}

async fn session(state: AppState, mut socket: WebSocket, pre_auth: Option<u32>, alpaca: bool) {
    let _listener = alpaca.then(|| AlpacaListener::new(&state));
    let _connected = Connected::new();
    let mut account = pre_auth;
    let mut quotes = false;
    let mut trade_updates = false;
    let mut last_sent = 0u64;
    // Authentication and subscription phase.
    while !trade_updates && !quotes {
        let message = match tokio::time::timeout(AUTH_TIMEOUT, next_json(&mut socket)).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => {
                let _ = send(
                    &mut socket,
                    json!({"stream": "error", "data": {"code": "invalid_json", "message": error}}),
                )
                .await;
                continue;
            }
            Ok(None) => return,
            Err(_) => {
                let _ = send(&mut socket, json!({"stream": "error", "data": {"code": "timeout", "message": "authenticate and subscribe within 10 s"}})).await;
                return;
            }
        };
        match message.get("action").and_then(Value::as_str) {
            Some("auth") | Some("authenticate") => {
                account = auth_from_message(&state, &message);
                let status = if account.is_some() {
                    "authorized"
                } else {
                    "unauthorized"
                };
                let reply = json!({"stream": "authorization", "data": {"status": status, "action": "authenticate"}});
                if !send(&mut socket, reply).await || account.is_none() {
                    return;
                }
            }
            Some("subscribe") | Some("listen") => {
                let Some(_) = account else {
                    let _ = send(&mut socket, json!({"stream": "error", "data": {"code": "unauthenticated", "message": "authenticate first"}})).await;
                    return;
                };
                let streams: Vec<String> = message
                    .get("streams")
                    .or_else(|| message.get("data").and_then(|d| d.get("streams")))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                trade_updates = streams.iter().any(|s| s == "trade_updates");
                quotes = !alpaca && streams.iter().any(|s| s == "quotes");
                last_sent = message
                    .get("resume_from")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if !alpaca && message.get("resume_from").is_none() {
                    // No resume point: start from now.
                    let model = state.bridge.state.read().unwrap_or_else(|e| e.into_inner());
                    last_sent = account
                        .and_then(|a| model.stream_seq.get(&a).copied())
                        .unwrap_or(0);
                }
                if alpaca {
                    let model = state.bridge.state.read().unwrap_or_else(|e| e.into_inner());
                    last_sent = account
                        .and_then(|a| model.stream_seq.get(&a).copied())
                        .unwrap_or(0);
                }
                let listening: Vec<&str> = [("trade_updates", trade_updates), ("quotes", quotes)]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(name, _)| *name)
                    .collect();
                if !send(
                    &mut socket,
                    json!({"stream": "listening", "data": {"streams": listening}}),
                )
                .await
                {
                    return;
                }
                if listening.is_empty() {
                    continue;
                }
            }
            _ => {
                let _ = send(&mut socket, json!({"stream": "error", "data": {"code": "invalid_action", "message": "expected action auth or subscribe"}})).await;
            }
        }
    }
    let Some(account) = account else {
        return;
    };
    let mut live = state.bridge.stream_tx.subscribe();
    if trade_updates {
        for item in backlog(&state, account, last_sent).await {
            if item.seq != last_sent + 1 {
                continue;
            }
            let text = if alpaca {
                item.alpaca.as_deref()
            } else {
                Some(&*item.body)
            };
            if let Some(text) = text {
                if !send_text(&mut socket, text).await {
                    return;
                }
            }
            last_sent = item.seq;
        }
    }
    loop {
        tokio::select! {
            received = live.recv() => {
                match received {
                    Ok(item) => {
                        if item.account == QUOTES {
                            if quotes && !send_text(&mut socket, &item.body).await {
                                return;
                            }
                            continue;
                        }
                        if item.account != account || !trade_updates || item.seq <= last_sent {
                            continue;
                        }
                        if item.seq > last_sent + 1 {
                            // Missed some (lagged): fill from the backlog.
                            for old in backlog(&state, account, last_sent).await {
                                if old.seq != last_sent + 1 || old.seq >= item.seq {
                                    continue;
                                }
                                let text = if alpaca { old.alpaca.as_deref() } else { Some(&*old.body) };
                                if let Some(text) = text {
                                    if !send_text(&mut socket, text).await {
                                        return;
                                    }
                                }
                                last_sent = old.seq;
                            }
                        }
                        let text = if alpaca { item.alpaca.as_deref() } else { Some(&*item.body) };
                        if let Some(text) = text {
                            if !send_text(&mut socket, text).await {
                                return;
                            }
                        }
                        last_sent = item.seq;
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
            incoming = socket.recv() => {
                match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(Message::Ping(payload))) => {
                        if socket.send(Message::Pong(payload)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}
