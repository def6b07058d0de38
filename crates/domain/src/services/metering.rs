//! Metering and the daily token quota: the one place that records model and embedding calls
//! and decides whether a tenant may make more.
//!
//! Every run and every embedding call made through the API is recorded with who made it, the
//! agent, the model and the UTC day, in the same transaction as what it produced. A tenant with
//! a daily quota reserves tokens before it spends them: a run is admitted only while the day's
//! use and reservations are below the quota; before each model turn it reserves that turn's
//! prompt (and, on its first, its answer's `max_tokens`), refused when that would not fit beside
//! everything else used and reserved, its own answer's allowance aside. Every reservation covers
//! what it can cost, so concurrent runs overshoot the quota by at most one run's `max_tokens`; and
//! the first to reserve goes ahead, so runs near the quota never refuse each other all at once.
//! Ingestion's embeddings are recorded, not counted.

use std::sync::Arc;

use chrono::{DateTime, Duration as Days, NaiveDate, Utc};

use crate::entities::Owner;
use crate::error::Error;
use crate::ports::{
    Clock, Reservation, Store, TenantTx, UsageFilter, UsageGroup, UsageRecord, UsageRow,
};
use crate::principal::{Principal, Scope};
use crate::services::conversations::visible_owner;

/// The longest span one usage summary covers.
pub const MAX_USAGE_DAYS: i64 = 366;

/// The UTC day of `at`.
#[must_use]
pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// Seconds from `now` to the next UTC midnight, when a spent quota is renewed (at least 1).
#[must_use]
pub fn seconds_to_midnight(now: DateTime<Utc>) -> u64 {
    let midnight = (day_of(now) + Days::days(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc());
    midnight
        .map(|m| u64::try_from((m - now).num_seconds()).unwrap_or(1))
        .unwrap_or(86_400)
        .max(1)
}

/// The refusal of a tenant whose quota is spent.
#[must_use]
pub fn quota_exceeded(now: DateTime<Utc>) -> Error {
    Error::QuotaExceeded {
        retry_after_secs: seconds_to_midnight(now),
    }
}

/// Admits a run while today's quota is not spent, in `tx` (it reserves nothing yet: its model
/// turns do), answered with the quota. `None` when the tenant has no quota.
///
/// # Errors
/// [`Error::QuotaExceeded`] when today's quota is spent; storage failures.
pub(crate) async fn admit_run(
    tx: &mut dyn TenantTx,
    now: DateTime<Utc>,
) -> Result<Option<(Reservation, u64)>, Error> {
    let quota = quota_of(tx).await?;
    admit_run_under(tx, quota, now).await
}

/// [`admit_run`] with the tenant's quota already read.
///
/// # Errors
/// As [`admit_run`].
pub(crate) async fn admit_run_under(
    tx: &mut dyn TenantTx,
    quota: Option<u64>,
    now: DateTime<Utc>,
) -> Result<Option<(Reservation, u64)>, Error> {
    let Some(quota) = quota else {
        return Ok(None);
    };
    let day = day_of(now);
    if !tx.usage().reserve(day, quota, 0).await? {
        return Err(quota_exceeded(now));
    }
    Ok(Some((Reservation { day, tokens: 0 }, quota)))
}

/// The tenant's daily quota, if it has one.
///
/// # Errors
/// Storage failures.
pub(crate) async fn quota_of(tx: &mut dyn TenantTx) -> Result<Option<u64>, Error> {
    Ok(tx.tenant().get().await?.and_then(|t| t.daily_token_quota))
}

/// A tenant's quota and today's use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaStatus {
    pub daily_token_quota: Option<u64>,
    /// Tokens counted today (UTC).
    pub used_today: u64,
    /// Tokens held by runs in progress.
    pub reserved: u64,
}

pub struct UsageService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl UsageService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Usage of days `from..=to` (UTC; both default to a window ending today: the last 30
    /// days), added up by `group_by`. Admins and admin keys see the tenant's; others their own.
    ///
    /// # Errors
    /// Validation of the span; `Forbidden` for platform keys.
    pub async fn summary(
        &self,
        who: &Principal,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        group_by: UsageGroup,
    ) -> Result<Vec<UsageRow>, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let principal = visible_owner(who)?;
        let today = day_of(self.clock.now());
        let to = to.unwrap_or(today);
        let from = from.unwrap_or(to - Days::days(29));
        if from > to {
            return Err(Error::invalid("from", "must not be after `to`"));
        }
        if (to - from).num_days() >= MAX_USAGE_DAYS {
            return Err(Error::invalid(
                "to",
                format!("a summary covers at most {MAX_USAGE_DAYS} days"),
            ));
        }
        let mut tx = self.store.begin(tenant).await?;
        let rows = tx
            .usage()
            .summary(&UsageFilter {
                from,
                to,
                principal,
                group_by,
            })
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The caller's tenant's quota and today's use.
    ///
    /// # Errors
    /// `Forbidden` for platform keys; storage failures.
    pub async fn quota(&self, who: &Principal) -> Result<QuotaStatus, Error> {
        let tenant = who.tenant()?;
        self.quota_of(tenant).await
    }

    /// A tenant's quota and today's use.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn quota_of(&self, tenant: crate::ids::TenantId) -> Result<QuotaStatus, Error> {
        let mut tx = self.store.begin(tenant).await?;
        let daily_token_quota = quota_of(tx.as_mut()).await?;
        let (used_today, reserved) = tx.usage().day(day_of(self.clock.now())).await?;
        tx.commit().await?;
        Ok(QuotaStatus {
            daily_token_quota,
            used_today,
            reserved,
        })
    }

    /// Refuses a call of `tenant` once today's quota is spent (an embedding call asks this before
    /// it is made; its cost is recorded after, with [`Self::record`]).
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`]; storage failures.
    pub async fn admit_call(&self, tenant: crate::ids::TenantId) -> Result<(), Error> {
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        // Most tenants have no quota: their day's counter is not read at all.
        let spent = match quota_of(tx.as_mut()).await? {
            Some(quota) => {
                let (used, reserved) = tx.usage().day(day_of(now)).await?;
                used + reserved >= quota
            }
            None => false,
        };
        tx.commit().await?;
        if spent {
            return Err(quota_exceeded(now));
        }
        Ok(())
    }

    /// Records a call made outside a run (an embedding).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn record(
        &self,
        tenant: crate::ids::TenantId,
        record: &UsageRecord,
    ) -> Result<(), Error> {
        let mut tx = self.store.begin(tenant).await?;
        tx.usage()
            .record(std::slice::from_ref(record), None)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The clock's now, for callers that build records.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// A record of one embedding call made through the API by `who`.
#[must_use]
pub fn embedding_record(
    who: Option<Owner>,
    space_id: &str,
    tokens: u32,
    counted: bool,
    now: DateTime<Utc>,
) -> UsageRecord {
    UsageRecord {
        id: uuid::Uuid::now_v7(),
        day: day_of(now),
        at: now,
        kind: crate::ports::UsageKind::Embedding,
        principal: who,
        agent_id: None,
        run_id: None,
        provider: "embedding".to_owned(),
        model: space_id.to_owned(),
        usage: crate::ports::TokenUsage {
            prompt_tokens: tokens,
            completion_tokens: 0,
        },
        counted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_spent_quota_is_renewed_at_the_next_utc_midnight() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 23, 59, 30).unwrap();
        assert_eq!(seconds_to_midnight(now), 30);
        let midnight = Utc.with_ymd_and_hms(2026, 12, 8, 0, 0, 0).unwrap();
        assert_eq!(seconds_to_midnight(midnight), 86_400);
    }
}
