//! The feedback table: operators' labels, read back when a service is trained.

use rusqlite::{Connection, params};

use super::{
    FeedbackRecord, Sqlite, StoreError, from_json, parse_column, parse_timestamp, timestamp_text,
    to_json,
};

impl Sqlite {
    /// Stores feedback records in one transaction, pruning the oldest beyond
    /// `MAX_FEEDBACK_RECORDS` in it; returns their ids.
    pub async fn insert_feedback(
        &self,
        records: Vec<FeedbackRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        self.write(move |connection, options| {
            let keep = i64::try_from(options.max_feedback_records).unwrap_or(i64::MAX);
            let transaction = connection.transaction()?;
            let mut ids = Vec::with_capacity(records.len());
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO feedback (service, source, format_type, raw_log, custom_config, is_anomaly, received_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for record in &records {
                    insert.execute(params![
                        record.service,
                        record.source,
                        record.format_type.as_str(),
                        record.raw_log,
                        record.custom_config.as_ref().map(to_json),
                        record.is_anomaly,
                        timestamp_text(&record.received_at),
                    ])?;
                    ids.push(transaction.last_insert_rowid());
                }
            }
            // Feedback is only ever pruned from the oldest end, so its AUTOINCREMENT ids are
            // contiguous and the newest `keep` rows are those above `MAX(id) - keep`.
            transaction.execute(
                "DELETE FROM feedback WHERE id <= (SELECT MAX(id) FROM feedback) - ?1",
                [keep],
            )?;
            transaction.commit()?;
            Ok(ids)
        })
        .await
    }

    pub async fn feedback_for_service(
        &self,
        service: impl Into<String>,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        let service = service.into();
        self.read(move |connection| select_feedback(connection, Some(&service)))
            .await
    }

    pub async fn all_feedback(&self) -> Result<Vec<FeedbackRecord>, StoreError> {
        self.read(|connection| select_feedback(connection, None))
            .await
    }

    pub async fn feedback_count(&self) -> Result<u64, StoreError> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT COUNT(*) FROM feedback", [], |row| row.get(0))?)
        })
        .await
    }
}

fn select_feedback(
    connection: &Connection,
    service: Option<&str>,
) -> Result<Vec<FeedbackRecord>, StoreError> {
    let sql = "SELECT id, service, source, format_type, raw_log, custom_config, is_anomaly, received_at \
               FROM feedback WHERE ?1 IS NULL OR service = ?1 ORDER BY id";
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query([service])?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let custom_config: Option<String> = row.get(5)?;
        let received_at: String = row.get(7)?;
        records.push(FeedbackRecord {
            id: row.get(0)?,
            service: row.get(1)?,
            source: row.get(2)?,
            format_type: parse_column(&row.get::<_, String>(3)?)?,
            raw_log: row.get(4)?,
            custom_config: custom_config
                .as_deref()
                .map(|text| from_json("feedback.custom_config", text))
                .transpose()?,
            is_anomaly: row.get(6)?,
            received_at: parse_timestamp(&received_at)?,
        });
    }
    Ok(records)
}
