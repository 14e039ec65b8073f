//! The anomalies table: group commit, retention and the queries of GET /api/v1/anomalies.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, Row, params};
use tokio::sync::oneshot;

use super::{
    AnomalyOrder, AnomalyQuery, AnomalyRecord, Inner, Sqlite, StoreError, from_json,
    parse_timestamp, timestamp_text, to_json,
};
use crate::detect::DetectorKind;
use crate::sync::lock;

impl Sqlite {
    /// Stores one request's anomalies durably and prunes beyond the retention bound; hands the
    /// records back with their new ids, in order, once they are committed.
    ///
    /// Requests that arrive while a commit is running are committed together in the next
    /// transaction (group commit): one fsync serves them all, so concurrent requests do not queue
    /// behind each other's disk flushes. If a group's transaction fails, each request of the group
    /// is retried in a transaction of its own, so one request's failure is never another's.
    pub async fn store_anomalies(
        &self,
        records: Vec<AnomalyRecord>,
    ) -> Result<Vec<AnomalyRecord>, StoreError> {
        if records.is_empty() {
            return Ok(records);
        }
        let (reply, committed) = oneshot::channel();
        let start_flusher = {
            let mut group = lock(&self.inner.group);
            group.queue.push(PendingInsert { records, reply });
            !std::mem::replace(&mut group.flushing, true)
        };
        if start_flusher {
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || flush_groups(&inner));
        }
        committed.await.map_err(|_| {
            StoreError::Background("the commit of this request's anomalies was abandoned".into())
        })?
    }

    /// Hands the anomalies `query` selects to `visit` one at a time, in order, on a blocking
    /// thread, within one read transaction; `visit` returns `Break` to stop early. Only one record
    /// is in memory at a time, whatever the limit and however large the records. Returns `state`
    /// as `visit` left it.
    pub async fn scan_anomalies<S, F>(
        &self,
        query: AnomalyQuery,
        mut state: S,
        mut visit: F,
    ) -> Result<S, StoreError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, AnomalyRecord) -> ControlFlow<()> + Send + 'static,
    {
        self.read(move |connection| {
            let (sql, values) = listing_sql(&query);
            let mut statement = connection.prepare_cached(&sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(values))?;
            while let Some(row) = rows.next()? {
                if visit(&mut state, anomaly_from_row(row)?).is_break() {
                    break;
                }
            }
            Ok(state)
        })
        .await
    }

    /// One anomaly by its id; `None` when there is none (never stored, or pruned since).
    pub async fn get_anomaly(&self, id: i64) -> Result<Option<AnomalyRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement =
                connection.prepare_cached(&format!("{LISTING_COLUMNS} WHERE id = ?1"))?;
            let mut rows = statement.query([id])?;
            match rows.next()? {
                Some(row) => Ok(Some(anomaly_from_row(row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Deletes every anomaly, or those of `service`; returns how many there were.
    pub async fn clear_anomalies(&self, service: Option<String>) -> Result<usize, StoreError> {
        self.write(move |connection, _| {
            Ok(match &service {
                None => connection.execute("DELETE FROM anomalies", [])?,
                Some(service) => {
                    connection.execute("DELETE FROM anomalies WHERE service = ?1", [service])?
                }
            })
        })
        .await
    }

    /// Stored anomalies deleted since the store opened to keep within `MAX_RECENT_ANOMALIES`.
    pub fn anomalies_pruned(&self) -> u64 {
        self.inner.pruned.load(Ordering::Relaxed)
    }

    /// How many anomalies are stored (the benchmarks and the tests wait on it).
    pub async fn count_anomalies(&self) -> Result<u64, StoreError> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT COUNT(*) FROM anomalies", [], |row| row.get(0))?)
        })
        .await
    }
}

/// The columns [`anomaly_from_row`] reads, in its order.
const LISTING_COLUMNS: &str = "SELECT id, timestamp, service, source, log_level, message, \
     anomaly_score, rule_violation, detector, violations, features, raw_log, metadata, context, \
     reasons FROM anomalies";

/// The SELECT of a listing and its parameters.
fn listing_sql(query: &AnomalyQuery) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = format!("{LISTING_COLUMNS} WHERE 1 = 1");
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(service) = &query.service {
        sql.push_str(" AND service = ?");
        values.push(service.clone().into());
    }
    if let Some(since) = &query.since {
        sql.push_str(" AND timestamp_ms >= ?");
        values.push(since.timestamp_millis().into());
    }
    if let Some(max_score) = query.max_score {
        sql.push_str(" AND anomaly_score <= ?");
        values.push(max_score.into());
    }
    if let Some(detector) = query.detector {
        sql.push_str(" AND detector = ?");
        values.push(detector.as_str().to_owned().into());
    }
    sql.push_str(match query.order {
        AnomalyOrder::Time => " ORDER BY timestamp_ms DESC, id DESC",
        // Rule anomalies of a service without a model have no score: they come last.
        AnomalyOrder::Score => " ORDER BY anomaly_score IS NULL, anomaly_score ASC, id DESC",
    });
    sql.push_str(" LIMIT ?");
    values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
    (sql, values)
}

/// Deletes the oldest anomalies beyond `keep`, in the caller's transaction.
///
/// Ids come from AUTOINCREMENT, so they are never reused. Rows leave from the oldest end (here),
/// all at once, or one service's at a time (`clear_anomalies`). What is kept is the rows with
/// the newest `keep` ids, those above `MAX(id) - keep`, found with two index probes: exactly the
/// newest `keep` rows while the ids are contiguous; after one service's rows were deleted, the
/// gaps they left count toward `keep` until they age out, so for a while fewer rows are kept,
/// never more. (Counting back `keep` rows with `OFFSET` instead read the whole retained table on every
/// request: 78 % of the CPU time of 100-log batches at the default retention, under perf.)
fn prune(connection: &Connection, keep: usize) -> Result<u64, StoreError> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let (oldest, newest): (Option<i64>, Option<i64>) = connection
        .prepare_cached("SELECT (SELECT MIN(id) FROM anomalies), (SELECT MAX(id) FROM anomalies)")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let (Some(oldest), Some(newest)) = (oldest, newest) else {
        return Ok(0);
    };
    let cutoff = newest.saturating_sub(keep);
    if cutoff >= oldest {
        let deleted = connection
            .prepare_cached("DELETE FROM anomalies WHERE id <= ?1")?
            .execute([cutoff])?;
        return Ok(deleted as u64);
    }
    Ok(0)
}

/// One request's anomalies waiting for the next group commit.
struct PendingInsert {
    records: Vec<AnomalyRecord>,
    reply: oneshot::Sender<Result<Vec<AnomalyRecord>, StoreError>>,
}

impl PendingInsert {
    /// Answers with the records, each given its new id.
    fn committed(self, ids: Vec<i64>) {
        let mut records = self.records;
        for (record, id) in records.iter_mut().zip(ids) {
            record.id = id;
        }
        let _ = self.reply.send(Ok(records));
    }
}

#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Vec<PendingInsert>,
    /// Whether a blocking task is committing; it keeps going until the queue is empty.
    flushing: bool,
}

/// Commits queued inserts, a whole queue per transaction, until none are left.
fn flush_groups(inner: &Inner) {
    loop {
        let group = {
            let mut state = lock(&inner.group);
            if state.queue.is_empty() {
                state.flushing = false;
                return;
            }
            std::mem::take(&mut state.queue)
        };
        // A panic must not leave `flushing` set (every later insert would wait forever); the
        // waiters of the lost group see their reply dropped and answer 500.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_group(inner, group);
        }));
        if outcome.is_err() {
            tracing::error!("An anomaly commit panicked; its requests fail, later ones go on.");
        }
    }
}

fn commit_group(inner: &Inner, group: Vec<PendingInsert>) {
    let mut writer = lock(&inner.writer);
    let Some(connection) = writer.as_mut() else {
        for pending in group {
            let _ = pending.reply.send(Err(StoreError::Closed));
        }
        return;
    };
    let batches: Vec<&[AnomalyRecord]> = group.iter().map(|p| p.records.as_slice()).collect();
    match insert_batches(connection, inner, &batches) {
        Ok(ids) => {
            for (pending, ids) in group.into_iter().zip(ids) {
                pending.committed(ids);
            }
        }
        Err(error) if group.len() == 1 => {
            if let Some(pending) = group.into_iter().next() {
                let _ = pending.reply.send(Err(error));
            }
        }
        Err(_) => {
            for pending in group {
                match insert_batches(connection, inner, &[&pending.records]) {
                    Ok(mut ids) => pending.committed(ids.pop().unwrap_or_default()),
                    Err(error) => {
                        let _ = pending.reply.send(Err(error));
                    }
                }
            }
        }
    }
}

/// Inserts every batch in one transaction, prunes, commits; the ids of each batch, in order.
/// Counts the rows pruned once they are gone for good (`Store::anomalies_pruned`).
fn insert_batches(
    connection: &mut Connection,
    inner: &Inner,
    batches: &[&[AnomalyRecord]],
) -> Result<Vec<Vec<i64>>, StoreError> {
    let options = &inner.options;
    let transaction = connection.transaction()?;
    let mut all_ids = Vec::with_capacity(batches.len());
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO anomalies (timestamp, timestamp_ms, service, source, log_level, message, \
             anomaly_score, rule_violation, detector, violations, features, raw_log, metadata, context, \
             reasons) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        for records in batches {
            let mut ids = Vec::with_capacity(records.len());
            for record in *records {
                insert.execute(params![
                    timestamp_text(&record.timestamp),
                    record.timestamp.timestamp_millis(),
                    record.service,
                    record.source,
                    record.log_level,
                    record.message,
                    record.anomaly_score,
                    record.rule_violation,
                    record.detector.as_str(),
                    to_json(&record.violations),
                    to_json(&record.features),
                    record.raw_log,
                    to_json(&record.metadata),
                    to_json(&record.context),
                    to_json(&record.reasons),
                ])?;
                ids.push(transaction.last_insert_rowid());
            }
            all_ids.push(ids);
        }
    }
    let pruned = prune(&transaction, options.max_recent_anomalies)?;
    transaction.commit()?;
    inner.pruned.fetch_add(pruned, Ordering::Relaxed);
    Ok(all_ids)
}

fn anomaly_from_row(row: &Row<'_>) -> Result<AnomalyRecord, StoreError> {
    let timestamp: String = row.get(1)?;
    let detector: String = row.get(8)?;
    let violations: String = row.get(9)?;
    let features: String = row.get(10)?;
    let metadata: String = row.get(12)?;
    let context: String = row.get(13)?;
    let reasons: String = row.get(14)?;
    Ok(AnomalyRecord {
        id: row.get(0)?,
        timestamp: parse_timestamp(&timestamp)?,
        service: row.get(2)?,
        source: row.get(3)?,
        log_level: row.get(4)?,
        message: row.get(5)?,
        anomaly_score: row.get(6)?,
        rule_violation: row.get(7)?,
        detector: DetectorKind::from_stored(&detector),
        violations: from_json("anomalies.violations", &violations)?,
        reasons: from_json("anomalies.reasons", &reasons)?,
        features: from_json("anomalies.features", &features)?,
        raw_log: row.get(11)?,
        metadata: from_json("anomalies.metadata", &metadata)?,
        context: from_json("anomalies.context", &context)?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::store::testing::{TestBackend, anomaly, on_each_backend};

    on_each_backend! {
    async fn anomalies_round_trip_and_filter(backend: TestBackend) {
        let store = backend.open(100).await;
        let ids = store
            .insert_anomalies(vec![
                anomaly("web", 1, Some(-0.2), DetectorKind::Model),
                anomaly("db", 2, None, DetectorKind::Rule),
                anomaly("web", 3, Some(-0.05), DetectorKind::Rule),
            ])
            .await
            .expect("insert");
        assert_eq!(ids.len(), 3);
        let all = store
            .list_anomalies(AnomalyQuery::default())
            .await
            .expect("list");
        assert_eq!(
            all.iter().map(|a| a.id).collect::<Vec<_>>(),
            [ids[2], ids[1], ids[0]]
        );
        assert_eq!(
            all[2],
            AnomalyRecord {
                id: ids[0],
                ..anomaly("web", 1, Some(-0.2), DetectorKind::Model)
            }
        );

        let web = AnomalyQuery {
            service: Some("web".into()),
            ..AnomalyQuery::default()
        };
        assert_eq!(store.list_anomalies(web).await.expect("web").len(), 2);
        let models = AnomalyQuery {
            detector: Some(DetectorKind::Model),
            ..AnomalyQuery::default()
        };
        assert_eq!(store.list_anomalies(models).await.expect("model").len(), 1);
        let since = AnomalyQuery {
            since: DateTime::from_timestamp(1_700_000_002, 0),
            ..AnomalyQuery::default()
        };
        assert_eq!(store.list_anomalies(since).await.expect("since").len(), 2);
        let by_score = AnomalyQuery {
            order: AnomalyOrder::Score,
            ..AnomalyQuery::default()
        };
        let scores: Vec<Option<f64>> = store
            .list_anomalies(by_score)
            .await
            .expect("score")
            .iter()
            .map(|a| a.anomaly_score)
            .collect();
        assert_eq!(scores, [Some(-0.2), Some(-0.05), None]);
        let limited = AnomalyQuery {
            limit: 1,
            ..AnomalyQuery::default()
        };
        assert_eq!(store.list_anomalies(limited).await.expect("limit").len(), 1);
        let anomalous = AnomalyQuery {
            max_score: Some(-0.1),
            ..AnomalyQuery::default()
        };
        let scores: Vec<Option<f64>> = store
            .list_anomalies(anomalous)
            .await
            .expect("max_score")
            .iter()
            .map(|a| a.anomaly_score)
            .collect();
        assert_eq!(scores, [Some(-0.2)], "unscored anomalies are left out");

        let one = store.get_anomaly(ids[0]).await.expect("read");
        assert_eq!(one.map(|record| record.id), Some(ids[0]));
        assert_eq!(store.get_anomaly(i64::MAX).await.expect("read"), None);
    }
    }

    on_each_backend! {
    async fn retention_keeps_the_newest(backend: TestBackend) {
        let store = backend.open(5).await;
        for batch in 0..4 {
            let records = (0..3)
                .map(|i| anomaly("web", batch * 3 + i, None, DetectorKind::Rule))
                .collect();
            store.insert_anomalies(records).await.expect("insert");
        }
        assert_eq!(store.count_anomalies().await.expect("count"), 5);
        let newest = store
            .list_anomalies(AnomalyQuery::default())
            .await
            .expect("list");
        assert_eq!(
            newest[0].timestamp,
            DateTime::from_timestamp(1_700_000_011, 0).expect("time")
        );
        assert_eq!(
            newest[4].timestamp,
            DateTime::from_timestamp(1_700_000_007, 0).expect("time")
        );
        assert_eq!(store.clear_anomalies(None).await.expect("clear"), 5);
        assert_eq!(store.count_anomalies().await.expect("count"), 0);

        // After a clear, ids go on from where they were: retention still keeps the newest.
        for batch in 0..3 {
            let records = (0..4)
                .map(|i| anomaly("web", 100 + batch * 4 + i, None, DetectorKind::Rule))
                .collect();
            store.insert_anomalies(records).await.expect("insert");
        }
        let newest = store
            .list_anomalies(AnomalyQuery::default())
            .await
            .expect("list");
        assert_eq!(newest.len(), 5);
        assert_eq!(
            newest[4].timestamp,
            DateTime::from_timestamp(1_700_000_107, 0).expect("time")
        );
    }
    }

    on_each_backend! {
    async fn clearing_one_service_keeps_the_others_and_retention_never_keeps_more(backend: TestBackend) {
        let store = backend.open(6).await;
        let records = (0..6)
            .map(|i| {
                let service = if i % 2 == 0 { "web" } else { "db" };
                anomaly(service, i, None, DetectorKind::Rule)
            })
            .collect();
        store.insert_anomalies(records).await.expect("insert");
        assert_eq!(
            store
                .clear_anomalies(Some("web".to_owned()))
                .await
                .expect("clear"),
            3
        );
        let left = store
            .list_anomalies(AnomalyQuery::default())
            .await
            .expect("list");
        assert!(left.iter().all(|record| record.service == "db"));
        assert_eq!(left.len(), 3);
        assert_eq!(
            store
                .clear_anomalies(Some("nobody".to_owned()))
                .await
                .expect("clear"),
            0
        );
        for i in 0..4 {
            let records = vec![anomaly("db", 10 + i, None, DetectorKind::Rule)];
            store.insert_anomalies(records).await.expect("insert");
            assert!(store.count_anomalies().await.expect("count") <= 6);
        }
    }
    }

    on_each_backend! {
    async fn concurrent_inserts_are_committed_together_and_each_gets_its_own_ids(backend: TestBackend) {
        let store = backend.open(10_000).await;
        let tasks: Vec<_> = (0..40)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let records = (0..5)
                        .map(|i| anomaly("web", task * 5 + i, None, DetectorKind::Rule))
                        .collect();
                    store.insert_anomalies(records).await.expect("insert")
                })
            })
            .collect();
        let mut all_ids = Vec::new();
        for task in tasks {
            let ids = task.await.expect("task");
            assert_eq!(ids.len(), 5);
            assert!(ids.windows(2).all(|pair| pair[1] > pair[0]), "{ids:?}");
            all_ids.extend(ids);
        }
        all_ids.sort_unstable();
        all_ids.dedup();
        assert_eq!(all_ids.len(), 200);
        assert_eq!(store.count_anomalies().await.expect("count"), 200);
    }
    }
}
