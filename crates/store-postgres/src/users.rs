//! Users within a tenant unit of work: credentials, roles, sessions, lifecycle.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{NewUser, User, UserChanges, UserCredentials};
use domain::page::{Page, PageRequest};
use domain::ports::{StoreResult, UserRepo};
use domain::values::Email;
use domain::{Actor, TokenFamilyId, UserId};
use sea_orm::FromQueryResult;
use uuid::Uuid;

use crate::lifecycle::Table;
use crate::rows::{USER_COLUMNS, UserRow, convert};
use crate::tenant_tx::{PgTx, execute, fetch_all, fetch_one, limit};

#[async_trait]
impl UserRepo for PgTx {
    async fn insert(&mut self, user: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        let sql = format!(
            "INSERT INTO users (tenant_id, id, email, name, password_hash, role, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7) RETURNING {USER_COLUMNS}"
        );
        let values = vec![
            self.t(),
            user.id.as_uuid().into(),
            user.email.as_str().into(),
            user.name.clone().into(),
            user.password_hash.as_str().into(),
            user.role.as_str().into(),
            now.into(),
        ];
        let row = fetch_one::<UserRow>(&self.tx, &sql, values).await?;
        row.ok_or_else(|| crate::error::corrupt("user", "insert returned nothing".into()))?
            .try_into()
    }

    async fn get(&mut self, id: UserId, include_deleted: bool) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE tenant_id = $1 AND id = $2 AND ($3 OR deleted_at IS NULL)"
        );
        fetch_one::<UserRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), include_deleted.into()],
        )
        .await?
        .map(User::try_from)
        .transpose()
    }

    async fn credentials_by_email(
        &mut self,
        email: &Email,
    ) -> StoreResult<Option<UserCredentials>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE tenant_id = $1 AND email = $2 AND deleted_at IS NULL"
        );
        fetch_one::<UserRow>(&self.tx, &sql, vec![self.t(), email.as_str().into()])
            .await?
            .map(UserCredentials::try_from)
            .transpose()
    }

    async fn list(&mut self, include_deleted: bool, page: PageRequest) -> StoreResult<Page<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE tenant_id = $1 AND ($2 OR deleted_at IS NULL) AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        );
        let rows = fetch_all::<UserRow>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                include_deleted.into(),
                page.after.into(),
                limit(page),
            ],
        )
        .await?;
        Ok(Page::from_rows(convert(rows)?, page, |u: &User| {
            u.id.as_uuid()
        }))
    }

    async fn update(
        &mut self,
        id: UserId,
        changes: &UserChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>> {
        let sql = format!(
            "UPDATE users SET
                 name = CASE WHEN $3 THEN $4 ELSE name END,
                 role = COALESCE($5, role),
                 status = COALESCE($6, status),
                 sessions_valid_after = CASE WHEN $8 THEN $7 ELSE sessions_valid_after END,
                 sessions_kept_family = CASE WHEN $8 THEN NULL ELSE sessions_kept_family END,
                 updated_at = $7
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
             RETURNING {USER_COLUMNS}"
        );
        let values = vec![
            self.t(),
            id.as_uuid().into(),
            changes.name.is_some().into(),
            changes.name.clone().flatten().into(),
            changes.role.map(|r| r.as_str().to_owned()).into(),
            changes.status.map(|s| s.as_str().to_owned()).into(),
            now.into(),
            changes.ends_sessions.into(),
        ];
        fetch_one::<UserRow>(&self.tx, &sql, values)
            .await?
            .map(User::try_from)
            .transpose()
    }

    async fn lock_active_admins(&mut self) -> StoreResult<Vec<UserId>> {
        #[derive(FromQueryResult)]
        struct Id {
            id: Uuid,
        }
        let rows = fetch_all::<Id>(
            &self.tx,
            "SELECT id FROM users
             WHERE tenant_id = $1 AND role = 'admin' AND status = 'active' AND deleted_at IS NULL
             FOR UPDATE",
            vec![self.t()],
        )
        .await?;
        Ok(rows.into_iter().map(|r| UserId::from_uuid(r.id)).collect())
    }

    async fn set_password(
        &mut self,
        id: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = execute(
            &self.tx,
            "UPDATE users SET password_hash = $3, updated_at = $4
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
            vec![
                self.t(),
                id.as_uuid().into(),
                password_hash.into(),
                now.into(),
            ],
        )
        .await?;
        Ok(n == 1)
    }

    async fn end_sessions(
        &mut self,
        id: UserId,
        keep: Option<TokenFamilyId>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = execute(
            &self.tx,
            "UPDATE users SET sessions_valid_after = $3, sessions_kept_family = $4
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
            vec![
                self.t(),
                id.as_uuid().into(),
                now.into(),
                keep.map(|f| f.as_uuid()).into(),
            ],
        )
        .await?;
        Ok(n == 1)
    }

    async fn soft_delete(
        &mut self,
        id: UserId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.soft_delete_row(Table::Users, id.as_uuid(), by, now)
            .await
    }

    async fn restore(&mut self, id: UserId, now: DateTime<Utc>) -> StoreResult<Option<User>> {
        self.restore_row::<UserRow>(Table::Users, id.as_uuid(), now, USER_COLUMNS)
            .await?
            .map(User::try_from)
            .transpose()
    }

    async fn purge(&mut self, id: UserId) -> StoreResult<bool> {
        self.purge_row(Table::Users, id.as_uuid()).await
    }
}
