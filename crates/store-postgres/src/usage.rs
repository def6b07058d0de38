//! Metering within a tenant unit of work: usage records, and the per-day counter of tokens used
//! and reserved that the daily quota is held against. The counter's row is locked by the first
//! statement that changes it, so concurrent reservations of one tenant take turns.

use async_trait::async_trait;
use chrono::NaiveDate;
use domain::ports::{
    Reservation, StoreResult, UsageFilter, UsageGroup, UsageRecord, UsageRepo, UsageRow,
};
use sea_orm::FromQueryResult;

use crate::tenant_tx::{PgTx, execute, fetch_all, fetch_one};

/// A token count as stored (`bigint`).
pub(crate) fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn counted(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PgTx {
    /// The day's counter, created empty when it is the day's first.
    async fn ensure_day(&self, day: NaiveDate) -> StoreResult<()> {
        execute(
            &self.tx,
            "INSERT INTO token_days (tenant_id, day) VALUES ($1, $2)
             ON CONFLICT (tenant_id, day) DO NOTHING",
            vec![self.t(), day.into()],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl UsageRepo for PgTx {
    async fn reserve(&mut self, day: NaiveDate, quota: u64, more: u64) -> StoreResult<bool> {
        self.ensure_day(day).await?;
        let reserved = execute(
            &self.tx,
            "UPDATE token_days SET reserved = reserved + $4
             WHERE tenant_id = $1 AND day = $2 AND used + reserved < $3",
            vec![
                self.t(),
                day.into(),
                tokens(quota).into(),
                tokens(more).into(),
            ],
        )
        .await?;
        Ok(reserved == 1)
    }

    async fn reserve_more(
        &mut self,
        day: NaiveDate,
        quota: u64,
        more: u64,
        allowance: u64,
    ) -> StoreResult<bool> {
        self.ensure_day(day).await?;
        let reserved = execute(
            &self.tx,
            "UPDATE token_days SET reserved = reserved + $4
             WHERE tenant_id = $1 AND day = $2 AND used + reserved + $4 <= $3 + $5",
            vec![
                self.t(),
                day.into(),
                tokens(quota).into(),
                tokens(more).into(),
                tokens(allowance).into(),
            ],
        )
        .await?;
        Ok(reserved == 1)
    }

    async fn record(
        &mut self,
        records: &[UsageRecord],
        release: Option<Reservation>,
    ) -> StoreResult<()> {
        let mut values = vec![self.t()];
        let mut rows = Vec::with_capacity(records.len());
        // What each day gains, and what is given back on the day that held it: one upsert of
        // every day's counter (in practice one row) in the statement that inserts the records.
        let mut days: std::collections::BTreeMap<NaiveDate, (u64, u64)> = Default::default();
        for record in records {
            let first = values.len() + 1;
            values.extend([
                record.id.into(),
                record.day.into(),
                record.at.into(),
                record.kind.as_str().into(),
                record.principal.map(|p| p.kind()).into(),
                record.principal.map(|p| p.id()).into(),
                record.agent_id.map(|a| a.as_uuid()).into(),
                record.run_id.map(|r| r.as_uuid()).into(),
                record.provider.clone().into(),
                record.model.clone().into(),
                i64::from(record.usage.prompt_tokens).into(),
                i64::from(record.usage.completion_tokens).into(),
                record.counted.into(),
            ]);
            let slots: Vec<String> = (first..first + 13).map(|n| format!("${n}")).collect();
            rows.push(format!("($1, {})", slots.join(", ")));
            let used = record.counted_tokens();
            if used > 0 {
                days.entry(record.day).or_default().0 += used;
            }
        }
        if let Some(held) = release.filter(|r| r.tokens > 0) {
            days.entry(held.day).or_default().1 += held.tokens;
        }
        let mut sql = String::new();
        if !rows.is_empty() {
            sql = format!(
                "INSERT INTO usage_records (tenant_id, id, day, at, kind, principal_kind,
                                            principal_id, agent_id, run_id, provider, model,
                                            prompt_tokens, completion_tokens, counted)
                 VALUES {}",
                rows.join(", ")
            );
        }
        if !days.is_empty() {
            let mut counters = Vec::with_capacity(days.len());
            for (day, (used, released)) in days {
                let first = values.len() + 1;
                values.extend([day.into(), tokens(used).into(), tokens(released).into()]);
                counters.push(format!(
                    "(${first}::date, ${}::bigint, ${}::bigint)",
                    first + 1,
                    first + 2
                ));
            }
            // A day that only gives back has its row already (its reservation made it).
            let upsert = format!(
                "INSERT INTO token_days (tenant_id, day, used)
                 SELECT $1, v.day, v.used FROM (VALUES {}) v(day, used, released)
                 ON CONFLICT (tenant_id, day) DO UPDATE
                 SET used = token_days.used + EXCLUDED.used,
                     reserved = GREATEST(0, token_days.reserved - (
                         SELECT v.released FROM (VALUES {0}) v(day, used, released)
                         WHERE v.day = token_days.day))",
                counters.join(", ")
            );
            sql = if sql.is_empty() {
                upsert
            } else {
                format!("WITH recorded AS ({sql}) {upsert}")
            };
        }
        if sql.is_empty() {
            return Ok(());
        }
        execute(&self.tx, &sql, values).await?;
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
