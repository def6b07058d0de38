use domain::error::Conflict;
use domain::ports::StoreError;
use sea_orm::sqlx::Error as SqlxError;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Maps a driver error: unique violations by constraint name become conflicts, the rest internal.
pub(crate) fn map(err: DbErr) -> StoreError {
    if let Some(SqlErr::UniqueConstraintViolation(message)) = err.sql_err() {
        let conflict = [
            ("agents_live_slug", Conflict::AgentSlugTaken),
            ("users_live_email", Conflict::UserEmailTaken),
            ("tenants_slug_key", Conflict::TenantSlugTaken),
            ("documents_live_content", Conflict::DocumentExists),
            ("generations_one_building", Conflict::ReembedInProgress),
            ("providers_name_key", Conflict::ProviderNameTaken),
        ]
        .into_iter()
        .find_map(|(constraint, conflict)| message.contains(constraint).then_some(conflict));
        if let Some(conflict) = conflict {
            return StoreError::Conflict(conflict);
        }
    }
    if let Some(reason) = unavailable(&err) {
        return StoreError::Unavailable(reason);
    }
    StoreError::Internal(Box::new(err))
}

/// What happened, when the database could not be reached or ended the session: the connection
/// dropped (a backend that crashed or was terminated), the server shutting down or recovering
/// (SQLSTATE class 08 and 57P01-57P03), or no pooled connection in time.
fn unavailable(err: &DbErr) -> Option<String> {
    let runtime = match err {
        DbErr::ConnectionAcquire(e) => {
            return Some(format!("no database connection could be had ({e})"));
        }
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return None,
    };
    let RuntimeErr::SqlxError(e) = runtime else {
        return None;
    };
    match e.as_ref() {
        SqlxError::Io(io) => Some(format!("the connection to the database was lost ({io})")),
        SqlxError::PoolTimedOut | SqlxError::PoolClosed | SqlxError::WorkerCrashed => {
            Some(format!("no database connection could be had ({e})"))
        }
        SqlxError::Database(db) => {
            let code = db.code().unwrap_or_default();
            (code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")).then(
                || {
                    format!(
                        "the database server ended the session: {} (SQLSTATE {code})",
                        db.message()
                    )
                },
            )
        }
        _ => None,
    }
}

/// A row that the schema should not allow (an unknown role, say): a bug or a hand edit.
pub(crate) fn corrupt(what: &str, detail: String) -> StoreError {
    StoreError::Internal(format!("corrupt {what} row: {detail}").into())
}
