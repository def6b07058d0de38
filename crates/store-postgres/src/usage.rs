//! Metering within a tenant unit of work: usage records, and the per-day counter of tokens used
//! and reserved that the daily quota is held against. The counter's row is locked by the first
//! statement that changes it, so concurrent reservations of one tenant take turns.

use async_trait::async_trait;
use chrono::NaiveDate;
use domain::ports::{
    Reservation, StoreResult, UsageFilter, UsageGroup, UsageRecord, UsageRepo, UsageRow,
};
use sea_orm::FromQueryResult;

use crate::tenant_tx::{Params, PgTx, execute, fetch_all, fetch_one};

/// A token count as stored (`bigint`).
pub(crate) fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn counted(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// What storing `records` takes, written under the condition `when` to run within one
/// statement: the records' `INSERT`, then one upsert of each day's counter (in practice one
/// row) with what the day gains and what `release` gives back on the day that held it. Each is
/// left out when it has nothing to do. `$1` is the tenant.
pub(crate) fn usage_statements(
    params: &mut Params,
    records: &[UsageRecord],
    release: Option<Reservation>,
    when: &str,
) -> Vec<String> {
    let mut statements = Vec::with_capacity(2);
    let mut rows = Vec::with_capacity(records.len());
    let mut days: std::collections::BTreeMap<NaiveDate, (u64, u64)> = Default::default();
    for record in records {
        let slots = [
            params.bind(record.id),
            params.bind(record.day),
            params.bind(record.at),
            params.bind(record.kind.as_str()),
            params.bind(record.principal.map(|p| p.kind())),
            params.bind(record.principal.map(|p| p.id())),
            params.bind(record.agent_id.map(|a| a.as_uuid())),
            params.bind(record.run_id.map(|r| r.as_uuid())),
            params.bind(record.provider.clone()),
            params.bind(record.model.clone()),
            params.bind(i64::from(record.usage.prompt_tokens)),
            params.bind(i64::from(record.usage.completion_tokens)),
            params.bind(record.counted),
        ];
        rows.push(format!("($1, {})", slots.join(", ")));
        let used = record.counted_tokens();
        if used > 0 {
            days.entry(record.day).or_default().0 += used;
        }
    }
    if let Some(held) = release.filter(|r| r.tokens > 0) {
        days.entry(held.day).or_default().1 += held.tokens;
    }
    if !rows.is_empty() {
        statements.push(format!(
            "INSERT INTO usage_records (tenant_id, id, day, at, kind, principal_kind,
                                        principal_id, agent_id, run_id, provider, model,
                                        prompt_tokens, completion_tokens, counted)
             SELECT * FROM (VALUES {}) v WHERE {when}",
            rows.join(", ")
        ));
    }
    if !days.is_empty() {
        let counters: Vec<String> = days
            .into_iter()
            .map(|(day, (used, released))| {
                format!(
                    "({}::date, {}::bigint, {}::bigint)",
                    params.bind(day),
                    params.bind(tokens(used)),
                    params.bind(tokens(released))
                )
            })
            .collect();
        // A day that only gives back has its row already (its reservation made it). `ON
        // CONFLICT DO UPDATE` sees only the target's columns: what a day gives back is read
        // from the list again.
        statements.push(format!(
            "INSERT INTO token_days (tenant_id, day, used)
             SELECT $1, v.day, v.used FROM (VALUES {0}) v(day, used, released) WHERE {when}
             ON CONFLICT (tenant_id, day) DO UPDATE
             SET used = token_days.used + EXCLUDED.used,
                 reserved = GREATEST(0, token_days.reserved - (
                     SELECT v.released FROM (VALUES {0}) v(day, used, released)
                     WHERE v.day = token_days.day))",
            counters.join(", ")
        ));
    }
    statements
}

impl PgTx {
    /// Adds `amount` to the day's reservation when `used + reserved + need <= limit`, creating
    /// the day's counter when it is the day's first: one statement, so that a reservation is
    /// one round trip. A new counter starts at zero, so it is created only when the condition
    /// holds at zero (it can only hold less as the counter grows).
    async fn reserve_within(
        &self,
        day: NaiveDate,
        amount: u64,
        need: u64,
        limit: u64,
    ) -> StoreResult<bool> {
        let reserved = execute(
            &self.tx,
            "INSERT INTO token_days AS d (tenant_id, day, reserved)
             SELECT $1, $2, $3 WHERE $4 <= $5
             ON CONFLICT (tenant_id, day) DO UPDATE SET reserved = d.reserved + EXCLUDED.reserved
             WHERE d.used + d.reserved + $4 <= $5",
            vec![
                self.t(),
                day.into(),
                tokens(amount).into(),
                tokens(need).into(),
                tokens(limit).into(),
            ],
        )
        .await?;
        Ok(reserved == 1)
    }
}

#[async_trait]
impl UsageRepo for PgTx {
    async fn reserve(&mut self, day: NaiveDate, quota: u64, more: u64) -> StoreResult<bool> {
        // Something of the quota must be left: at least one token.
        self.reserve_within(day, more, 1, quota).await
    }

    async fn reserve_more(
        &mut self,
        day: NaiveDate,
        quota: u64,
        more: u64,
        allowance: u64,
    ) -> StoreResult<bool> {
        self.reserve_within(day, more, more, quota.saturating_add(allowance))
            .await
    }

    async fn record(
        &mut self,
        records: &[UsageRecord],
        release: Option<Reservation>,
    ) -> StoreResult<()> {
        let mut params = Params::of(self);
        let Some(sql) = usage_statements(&mut params, records, release, "true")
            .into_iter()
            .reduce(|recorded, counted| format!("WITH recorded AS ({recorded}) {counted}"))
        else {
            return Ok(());
        };
        execute(&self.tx, &sql, params.into_values()).await?;
        Ok(())
    }

    async fn day(&mut self, day: NaiveDate) -> StoreResult<(u64, u64)> {
        #[derive(FromQueryResult)]
        struct Row {
            used: i64,
            reserved: i64,
        }
        let row = fetch_one::<Row>(
            &self.tx,
            "SELECT used, reserved FROM token_days WHERE tenant_id = $1 AND day = $2",
            vec![self.t(), day.into()],
        )
        .await?;
        Ok(row.map_or((0, 0), |r| (counted(r.used), counted(r.reserved))))
    }

    async fn summary(&mut self, filter: &UsageFilter) -> StoreResult<Vec<UsageRow>> {
        #[derive(FromQueryResult)]
        struct Row {
            key: String,
            prompt_tokens: i64,
            completion_tokens: i64,
            runs: i64,
        }
        let key = match filter.group_by {
            UsageGroup::Day => "to_char(day, 'YYYY-MM-DD')",
            UsageGroup::Agent => "COALESCE(agent_id::text, 'none')",
            UsageGroup::Principal => {
                "COALESCE(principal_kind || ':' || principal_id::text, 'platform')"
            }
            UsageGroup::Model => {
                "CASE kind WHEN 'embedding' THEN 'embedding/' || model
                           ELSE provider || '/' || model END"
            }
        };
        let sql = format!(
            "SELECT {key} AS key,
                    sum(prompt_tokens)::bigint AS prompt_tokens,
                    sum(completion_tokens)::bigint AS completion_tokens,
                    count(DISTINCT run_id) FILTER (WHERE kind = 'chat')::bigint AS runs
             FROM usage_records
             WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
               AND ($4::text IS NULL OR (principal_kind = $4 AND principal_id = $5))
             GROUP BY 1 ORDER BY 1"
        );
        let rows = fetch_all::<Row>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                filter.from.into(),
                filter.to.into(),
                filter.principal.map(|p| p.kind()).into(),
                filter.principal.map(|p| p.id()).into(),
            ],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| UsageRow {
                key: r.key,
                prompt_tokens: counted(r.prompt_tokens),
                completion_tokens: counted(r.completion_tokens),
                runs: counted(r.runs),
            })
            .collect())
    }
}
