//! Outgoing mail: every message is recorded in the `outbox` table (the
//! development mailbox). With SMTP configured it is also sent over SMTP
//! (lettre, on a blocking thread); otherwise a log line says where it is.

use crate::app::AppState;
use crate::error::ApiResult;

pub async fn send(state: &AppState, to: &str, subject: &str, body: &str) -> ApiResult<()> {
    let smtp = state.config.smtp.clone();
    let delivery = if smtp.is_some() { "smtp" } else { "dev" };
    let (to_s, subject_s, body_s) = (to.to_string(), subject.to_string(), body.to_string());
    let now = crate::time::now_secs() as i64;
    let id: i64 = state
        .db
        .call(move |c| {
            c.execute(
                "INSERT INTO outbox (recipient, subject, body, created_at, delivery) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![to_s, subject_s, body_s, now, delivery],
            )?;
            Ok::<_, rusqlite::Error>(c.last_insert_rowid())
        })
        .await??;
    match smtp {
        None => tracing::info!(
            gateway = "rest",
            to,
            subject,
            outbox_id = id,
            read_at = %format_args!("/api/v1/dev/mailbox?email={to}"),
            "mail stored in the development mailbox (no SMTP configured)"
        ),
        Some(smtp) => {
            let (to, subject, body) = (to.to_string(), subject.to_string(), body.to_string());
            let db = state.db.clone();
            tokio::task::spawn_blocking(move || {
                let result = deliver(&smtp, &to, &subject, &body);
                let error = result.err();
                if let Some(error) = &error {
                    tracing::error!(gateway = "rest", to = %to, error = %error, "SMTP delivery failed");
                }
                db.send(move |c| {
                    let _ = c.execute(
                        "UPDATE outbox SET error = ?1 WHERE id = ?2",
                        rusqlite::params![error, id],
                    );
                });
            });
        }
    }
    Ok(())
}

fn deliver(smtp: &crate::SmtpConfig, to: &str, subject: &str, body: &str) -> Result<(), String> {
    use lettre::{Message, SmtpTransport, Transport};
    let message = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("from: {e}"))?)
        .to(to.parse().map_err(|e| format!("to: {e}"))?)
        .subject(subject)
        .body(body.to_string())
        .map_err(|e| e.to_string())?;
    let transport = SmtpTransport::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .timeout(Some(std::time::Duration::from_secs(10)))
        .build();
    transport
        .send(&message)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
