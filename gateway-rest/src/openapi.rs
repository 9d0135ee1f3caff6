//! OpenAPI 3 document of `/api/v1`, generated from the handlers'
//! `#[utoipa::path]` annotations and these schemas; served at
//! `/api/v1/openapi.json` with Swagger UI (vendored assets) at
//! `/api/v1/docs`.

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An error (RFC 9457 problem details, plus `code` and `message`).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    /// 8 to 256 characters.
    pub password: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyRequest {
    pub email: String,
    /// The 6-digit code from the verification mail.
    pub passcode: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmailRequest {
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// TOTP code, when MFA is on (or use `/auth/login/mfa`).
    pub totp: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MfaLoginRequest {
    pub mfa_token: String,
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct CodeRequest {
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct MfaEnrolment {
    /// Base32 TOTP secret.
    pub secret: String,
    pub otpauth_uri: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub key_id: String,
    /// Shown once; stored hashed.
    pub secret: String,
}

/// A money amount: a decimal number or string, up to 4 decimals.
#[derive(Serialize, ToSchema)]
pub struct AmountRequest {
    #[schema(value_type = String, example = "1000.00")]
    pub amount: String,
}

#[derive(Serialize, ToSchema)]
pub struct Transfer {
    pub id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub amount: String,
    pub available: String,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrderRequest {
    #[schema(example = "AAPL")]
    pub symbol: String,
    /// buy | sell
    pub side: String,
    /// limit (default) | market
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// day (default) | gtc | ioc | fok
    pub time_in_force: Option<String>,
    /// Required for limit orders; a multiple of the tick size.
    #[schema(value_type = Option<String>, example = "190.00")]
    pub limit_price: Option<String>,
    /// Whole shares, a multiple of the lot size.
    #[schema(value_type = String, example = "10")]
    pub qty: String,
    /// Unique per account, 1 to 64 characters.
    pub client_order_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplaceRequest {
    /// New total quantity.
    #[schema(value_type = Option<String>)]
    pub qty: Option<String>,
    #[schema(value_type = Option<String>)]
    pub limit_price: Option<String>,
}

/// An order; decimals are strings.
#[derive(Serialize, ToSchema)]
pub struct Order {
    /// UUID.
    pub id: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub time_in_force: String,
    pub limit_price: Option<String>,
    pub qty: String,
    pub filled_qty: String,
    pub leaves_qty: String,
    pub filled_avg_price: Option<String>,
    /// new | partially_filled | filled | canceled | expired | rejected
    pub status: String,
    pub reject_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_id",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("APCA-API-KEY-ID"))),
        );
        components.add_security_scheme(
            "api_key_secret",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("APCA-API-SECRET-KEY"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "BrokerX REST API", version = "1", description = "Retail accounts, MFA, wallet, orders, portfolio and market data. Errors are application/problem+json with `code` and `message`. WebSocket: /api/v1/ws. Alpaca-compatible: /v2 and /stream."),
    servers((url = "/api/v1")),
    modifiers(&Security),
    paths(
        crate::auth::register, crate::auth::verify, crate::auth::resend, crate::auth::login,
        crate::auth::login_mfa, crate::auth::refresh, crate::auth::logout, crate::auth::mfa_enroll,
        crate::auth::mfa_confirm, crate::auth::me, crate::auth::create_api_key,
        crate::auth::list_api_keys, crate::auth::revoke_api_key, crate::auth::dev_mailbox,
        crate::wallet::wallet, crate::wallet::deposit, crate::wallet::withdraw,
        crate::trading::symbols, crate::trading::quote, crate::trading::depth, crate::trading::trades,
        crate::trading::place, crate::trading::list, crate::trading::get_one, crate::trading::replace,
        crate::trading::cancel_one, crate::trading::cancel_all, crate::trading::portfolio,
        crate::trading::activities,
    ),
    components(schemas(Problem, RegisterRequest, VerifyRequest, EmailRequest, LoginRequest,
        MfaLoginRequest, RefreshRequest, CodeRequest, Tokens, MfaEnrolment, ApiKeyCreated,
        AmountRequest, Transfer, OrderRequest, ReplaceRequest, Order)),
)]
pub struct ApiDoc;
