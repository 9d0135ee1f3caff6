//! Small primitives: random tokens, SHA-256, HS256 JWTs, RFC 6238 TOTP,
//! argon2 password hashes, and the UUID form of engine order ids.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the OS random source works");
    bytes
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random token of `N` bytes, hex.
pub fn token<const N: usize>() -> String {
    hex(&random_bytes::<N>())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Constant-time comparison of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- JWT (RFC 7519, HS256) ----

#[derive(Debug, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    BadSignature,
    Expired,
}

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

pub fn jwt_sign<T: Serialize>(key: &[u8], claims: &T) -> String {
    let header = URL_SAFE_NO_PAD.encode(JWT_HEADER);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Verifies signature and `exp` (seconds since the epoch) against `now`.
pub fn jwt_verify<T: DeserializeOwned>(key: &[u8], token: &str, now: u64) -> Result<T, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| JwtError::Malformed)?;
    let header_value: serde_json::Value =
        serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
    if header_value.get("alg").and_then(|v| v.as_str()) != Some("HS256") {
        return Err(JwtError::BadSignature);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| JwtError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)?;
    let value: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
    let exp = value
        .get("exp")
        .and_then(|v| v.as_u64())
        .ok_or(JwtError::Malformed)?;
    if exp <= now {
        return Err(JwtError::Expired);
    }
    serde_json::from_value(value).map_err(|_| JwtError::Malformed)
}

// ---- base32 (RFC 4648, no padding) for TOTP secrets ----

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in data {
        buffer = (buffer << 8) | byte as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = B32.iter().position(|b| *b == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

// ---- TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits) ----

pub const TOTP_STEP: u64 = 30;

/// RFC 4226 HOTP value of `counter`, 6 digits.
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let mut mac = HmacSha1::new_from_slice(secret).expect("any key length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let code = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    code % 1_000_000
}

pub fn totp(secret: &[u8], unix_seconds: u64) -> String {
    format!("{:06}", hotp(secret, unix_seconds / TOTP_STEP))
}

/// Accepts the current step and one either side (clock skew). Returns the
/// matching step so a code cannot be used twice.
pub fn totp_check(secret: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = unix_seconds / TOTP_STEP;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| {
            ct_eq(
                format!("{:06}", hotp(secret, *s)).as_bytes(),
                code.as_bytes(),
            )
        })
}

pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        secret_b32,
        enc(issuer)
    )
}

// ---- argon2 ----

pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt_bytes = random_bytes::<16>();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing succeeds")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

// ---- order ids as UUIDs ----

/// The engine's order id (`generation << 32 | slot`) as a version-4-shaped
/// UUID: `GGGGGGGG-0000-4000-8000-0000SSSSSSSS`. Stateless both ways.
pub fn order_uuid(order_id: u64) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        order_id >> 32,
        order_id & 0xffff_ffff
    )
}

pub fn parse_order_uuid(text: &str) -> Option<u64> {
    let text = text.to_ascii_lowercase();
    let b = text.as_bytes();
    if b.len() != 36 || &text[8..24] != "-0000-4000-8000-" {
        return None;
    }
    let generation = u64::from_str_radix(&text[..8], 16).ok()?;
    let slot = u64::from_str_radix(&text[24..], 16).ok()?;
    if slot > u32::MAX as u64 || !text[..8].bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(generation << 32 | slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890" (8
        // digits there; the last 6 digits here).
        let secret = b"12345678901234567890";
        assert_eq!(totp(secret, 59), "287082");
        assert_eq!(totp(secret, 1111111109), "081804");
        assert_eq!(totp(secret, 1234567890), "005924");
        assert_eq!(totp(secret, 2000000000), "279037");
        assert!(totp_check(secret, "287082", 59).is_some());
        assert!(totp_check(secret, "287083", 59).is_none());
        assert!(totp_check(secret, "28708", 59).is_none());
    }

    #[test]
    fn base32_round_trip() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        let bytes = random_bytes::<20>();
        assert_eq!(base32_decode(&base32_encode(&bytes)).unwrap(), bytes);
        assert!(base32_decode("1!").is_none());
    }

    #[test]
    fn jwt_round_trip_and_failures() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct C {
            sub: u64,
            exp: u64,
        }
        let token = jwt_sign(b"k1", &C { sub: 7, exp: 100 });
        assert_eq!(
            jwt_verify::<C>(b"k1", &token, 50),
            Ok(C { sub: 7, exp: 100 })
        );
        assert_eq!(jwt_verify::<C>(b"k1", &token, 100), Err(JwtError::Expired));
        assert_eq!(
            jwt_verify::<C>(b"k2", &token, 50),
            Err(JwtError::BadSignature)
        );
        assert_eq!(jwt_verify::<C>(b"k1", "a.b", 50), Err(JwtError::Malformed));
        let mut forged = token.clone();
        forged.pop();
        forged.push('A');
        assert!(jwt_verify::<C>(b"k1", &forged, 50).is_err());
        // alg=none is refused.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":7,"exp":100}"#)
        );
        assert!(jwt_verify::<C>(b"k1", &none, 50).is_err());
    }

    #[test]
    fn order_uuid_round_trip() {
        for id in [1u64, (3 << 32) | 17, u64::MAX] {
            assert_eq!(parse_order_uuid(&order_uuid(id)), Some(id));
        }
        assert_eq!(
            order_uuid((3 << 32) | 17),
            "00000003-0000-4000-8000-000000000011"
        );
        assert!(parse_order_uuid("not-a-uuid").is_none());
        assert!(parse_order_uuid("00000003-0000-4000-8000-1000000000011").is_none());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "garbage"));
    }
}
