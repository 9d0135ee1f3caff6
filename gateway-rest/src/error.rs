//! Errors as `application/problem+json` (RFC 9457), also carrying `code`
//! and `message` (the Alpaca shape), so both kinds of client read them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
    pub extra: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            extra: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
            .with_header("www-authenticate", "Bearer".into())
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            .with_header("retry-after", "1".into())
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn with_extra(mut self, extra: serde_json::Value) -> ApiError {
        self.extra = Some(extra);
        self
    }
}

impl From<crate::db::DbGone> for ApiError {
    fn from(_: crate::db::DbGone) -> ApiError {
        ApiError::unavailable("storage unavailable")
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> ApiError {
        ApiError::internal(format!("storage error: {e}"))
    }
}

impl From<crate::bridge::RequestError> for ApiError {
    fn from(e: crate::bridge::RequestError) -> ApiError {
        match e {
            crate::bridge::RequestError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_busy",
                "the engine's inbound queue is full; retry",
            )
            .with_header("retry-after", "1".into()),
            crate::bridge::RequestError::Down => {
                ApiError::unavailable("the engine is not reachable")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .to_string();
        let mut body = json!({
            "type": format!("https://brokerx.invalid/problems/{}", self.code),
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.message,
            "code": self.code,
            "message": self.message,
        });
        if let Some(serde_json::Value::Object(extra)) = self.extra {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
