//! Operational records as stored: written idempotently in one transaction
//! per batch, read back by agreement or service for indicators.

use accord_domain::monitoring::OperationalRecord;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Result, Store, StoreError, Tx};

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn record_from_row(row: &AnyRow) -> Result<OperationalRecord> {
    let version: Option<i64> = row.try_get("agreement_version")?;
    let status: i64 = row.try_get("status")?;
    let success: i64 = row.try_get("success")?;
    let request_size: i64 = row.try_get("request_size")?;
    let response_size: i64 = row.try_get("response_size")?;
    Ok(OperationalRecord {
        record_id: row.try_get("record_id")?,
        side: row.try_get("side")?,
        client: row.try_get("client")?,
        service: row.try_get("service")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        purpose: row.try_get("purpose")?,
        agreement: row.try_get("agreement")?,
        agreement_version: version
            .map(u32::try_from)
            .transpose()
            .map_err(|e| corrupt("agreement version", e))?,
        grant: row.try_get("grant_id")?,
        deny_reason: row.try_get("deny_reason")?,
        status: u16::try_from(status).map_err(|e| corrupt("status", e))?,
        success: success != 0,
        error_type: row.try_get("error_type")?,
        request_in_ms: row.try_get("request_in_ms")?,
        request_out_ms: row.try_get("request_out_ms")?,
        response_in_ms: row.try_get("response_in_ms")?,
        response_out_ms: row.try_get("response_out_ms")?,
        request_size: u64::try_from(request_size).map_err(|e| corrupt("request size", e))?,
        response_size: u64::try_from(response_size).map_err(|e| corrupt("response size", e))?,
        data_subject_pseudonym: row.try_get("data_subject_pseudonym")?,
    })
}

/// Columns of one record, in insert order.
const COLUMNS: usize = 23;
/// The most rows one INSERT carries. A batch (up to a few hundred records)
/// is written in power-of-two chunks up to this, so a connection prepares
/// at most eight distinct statements, and a batch of 250 takes six round
/// trips to the database instead of one per few rows.
const MAX_ROWS_PER_INSERT: usize = 128;

/// The INSERT of `rows` records. SQLite gets anonymous `?` parameters:
/// sqlx binds a *named* parameter (`$7`) by asking SQLite its name, which
/// SQLite finds by a scan of the statement's parameter list, so binding a
/// statement with `$N` costs the square of its parameter count (at 128 rows,
/// 2,944 parameters, that was most of the registry's ingest time); `?`
/// parameters have no name and bind in order. PostgreSQL needs `$N`.
fn insert_statement(rows: usize, numbered: bool) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=COLUMNS)
                .map(|c| {
                    if numbered {
                        format!("${}", r * COLUMNS + c)
                    } else {
                        "?".to_owned()
                    }
                })
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO operational_records (gateway, record_id, side, client, service, method, path, \
         purpose, agreement, agreement_version, grant_id, deny_reason, status, success, error_type, \
         request_in_ms, request_out_ms, response_in_ms, response_out_ms, request_size, response_size, \
         data_subject_pseudonym, received_at) VALUES {} \
         ON CONFLICT (gateway, record_id) DO NOTHING",
        values.join(", ")
    )
}

/// `statements(numbered)[k]` inserts `2^k` rows.
fn statements(numbered: bool) -> &'static [String] {
    static NUMBERED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    static ANONYMOUS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let cell = if numbered { &NUMBERED } else { &ANONYMOUS };
    cell.get_or_init(|| {
        (0..=MAX_ROWS_PER_INSERT.ilog2())
            .map(|k| insert_statement(1 << k, numbered))
            .collect()
    })
}

impl Tx {
    pub async fn insert_operational_records(
        &mut self,
        gateway: &str,
        records: &[OperationalRecord],
        at: &str,
    ) -> Result<u64> {
        let numbered = self.conn().backend_name() != "SQLite";
        let mut inserted = 0;
        let mut rest = records;
        while !rest.is_empty() {
            let exponent = rest.len().min(MAX_ROWS_PER_INSERT).ilog2() as usize;
            let (chunk, tail) = rest.split_at(1 << exponent);
            rest = tail;
            let mut query = sqlx::query(&statements(numbered)[exponent]);
            for r in chunk {
                query = query
                    .bind(gateway.to_owned())
                    .bind(r.record_id.clone())
                    .bind(r.side.clone())
                    .bind(r.client.clone())
                    .bind(r.service.clone())
                    .bind(r.method.clone())
                    .bind(r.path.clone())
                    .bind(r.purpose.clone())
                    .bind(r.agreement.clone())
                    .bind(r.agreement_version.map(i64::from))
                    .bind(r.grant.clone())
                    .bind(r.deny_reason.clone())
                    .bind(i64::from(r.status))
                    .bind(i64::from(r.success))
                    .bind(r.error_type.clone())
                    .bind(r.request_in_ms)
                    .bind(r.request_out_ms)
                    .bind(r.response_in_ms)
                    .bind(r.response_out_ms)
                    .bind(i64::try_from(r.request_size).map_err(|e| corrupt("request size", e))?)
                    .bind(i64::try_from(r.response_size).map_err(|e| corrupt("response size", e))?)
                    .bind(r.data_subject_pseudonym.clone())
                    .bind(at.to_owned());
            }
            inserted += query.execute(self.conn()).await?.rows_affected();
        }
        Ok(inserted)
    }
}

impl Store {
    /// Records of one agreement, oldest first, at most `limit`.
    pub async fn operational_records(
        &self,
        agreement: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, OperationalRecord)>> {
        let rows = match agreement {
            Some(a) => {
                sqlx::query(
                    "SELECT * FROM operational_records WHERE agreement = $1 \
                     ORDER BY request_in_ms, gateway, record_id LIMIT $2",
                )
                .bind(a.to_owned())
                .bind(limit)
                .fetch_all(&mut *self.read().await?)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT * FROM operational_records ORDER BY request_in_ms, gateway, record_id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&mut *self.read().await?)
                .await?
            }
        };
        rows.iter()
            .map(|row| Ok((row.try_get("gateway")?, record_from_row(row)?)))
            .collect()
    }
}
