use domain::error::Conflict;
use domain::ports::StoreError;
use sea_orm::{DbErr, SqlErr};

/// Maps a driver error: unique violations by constraint name become conflicts, the rest internal.
pub(crate) fn map(err: DbErr) -> StoreError {
    if let Some(SqlErr::UniqueConstraintViolation(message)) = err.sql_err() {
        let conflict = [
            ("agents_live_slug", Conflict::AgentSlugTaken),
            ("users_live_email", Conflict::UserEmailTaken),
            ("tenants_slug_key", Conflict::TenantSlugTaken),
            ("documents_live_content", Conflict::DocumentExists),
            ("generations_one_building", Conflict::ReembedInProgress),
        ]
        .into_iter()
        .find_map(|(constraint, conflict)| message.contains(constraint).then_some(conflict));
        if let Some(conflict) = conflict {
            return StoreError::Conflict(conflict);
        }
    }
    StoreError::Internal(Box::new(err))
}

/// A row that the schema should not allow (an unknown role, say): a bug or a hand edit.
pub(crate) fn corrupt(what: &str, detail: String) -> StoreError {
    StoreError::Internal(format!("corrupt {what} row: {detail}").into())
}
