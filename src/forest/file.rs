//! The model file: a fitted forest with its feature names and fill values, versioned and
//! checksummed, written atomically. The service stores models with it and `train` ships them.
//!
//! Layout (little-endian):
//!
//! ```text
//! magic "AIOIFRST" | format version u32 | payload length u64 | payload | CRC-32 of payload u32
//! payload: params (n_estimators u64, max_samples tag u8 + u64/f64, max_features f64,
//!          contamination tag u8 + f64, seed u64), n_features u64, max_samples_ u64, height u32,
//!          offset f64, feature names, fill values, metadata, trees
//!          (per tree: node count u64, then per node threshold f64, feature u32, base u32,
//!          path length f64)
//! ```
//!
//! Strings are a u64 byte length and UTF-8; lists are a u64 count and their items.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::forest::params::IsolationForestValidParams;
use crate::forest::tree::{MAX_COLUMNS, Node};
use crate::forest::{Contamination, IsolationForest, MaxSamples, ModelFileError, check_trees};

const MAGIC: &[u8; 8] = b"AIOIFRST";
/// The model file format this build writes and the newest it reads.
pub const MODEL_FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8;
const CHECKSUM_LEN: usize = 4;
/// The deepest tree a file may declare; 2^64 points would be needed to reach it.
const MAX_HEIGHT: u32 = 64;

/// A fitted forest with everything needed to score a service's logs.
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    /// The features the forest reads, in column order.
    pub feature_names: Vec<String>,
    /// Per feature, the value used when a log lacks it (the training median).
    pub fill_values: Vec<f64>,
    /// The fitted forest.
    pub forest: IsolationForest,
    /// Free-form facts: service, training time, source.
    pub metadata: BTreeMap<String, String>,
}

impl ModelArtifact {
    /// Writes the model to `path` atomically: a temporary file in the same directory, flushed to
    /// disk, then renamed over `path`, so readers see the old model or the new one, never half.
    ///
    /// # Errors
    /// [`ModelFileError::Io`] naming the file when writing, syncing or renaming fails.
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let bytes = self.to_bytes();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_owned());
        let temp = path.with_file_name(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |action, source| ModelFileError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let written = (|| {
            let mut file =
                fs::File::create(&temp).map_err(|e| io("creating a temporary file", e))?;
            file.write_all(&bytes).map_err(|e| io("writing", e))?;
            file.sync_all().map_err(|e| io("syncing", e))?;
            fs::rename(&temp, path).map_err(|e| io("renaming the temporary file", e))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Reads a model written by [`save`](Self::save).
    ///
    /// # Errors
    /// Each names the file: [`ModelFileError::Io`], [`NotAModel`](ModelFileError::NotAModel),
    /// [`NewerVersion`](ModelFileError::NewerVersion), [`Truncated`](ModelFileError::Truncated),
    /// [`Checksum`](ModelFileError::Checksum) (corrupt), or [`Malformed`](ModelFileError::Malformed)
    /// for content that passes the checksum but cannot be a forest.
    pub fn load(path: &Path) -> Result<ModelArtifact, ModelFileError> {
        let bytes = fs::read(path).map_err(|source| ModelFileError::Io {
            path: path.to_path_buf(),
            action: "reading",
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut payload = Writer(Vec::new());
        let params = self.forest.fitted_params();
        payload.u64(params.n_estimators() as u64);
        match params.max_samples() {
            MaxSamples::Auto => payload.u8(0),
            MaxSamples::Count(count) => {
                payload.u8(1);
                payload.u64(count as u64);
            }
            MaxSamples::Fraction(share) => {
                payload.u8(2);
                payload.f64(share);
            }
        }
        payload.f64(params.max_features());
        match params.contamination() {
            Contamination::Auto => payload.u8(0),
            Contamination::Fraction(share) => {
                payload.u8(1);
                payload.f64(share);
            }
        }
        payload.u64(params.seed());
        let forest = &self.forest;
        payload.u64(forest.n_features as u64);
        payload.u64(forest.max_samples as u64);
        payload.u32(forest.height);
        payload.f64(forest.offset);
        payload.u64(self.feature_names.len() as u64);
        for name in &self.feature_names {
            payload.str(name);
        }
        payload.u64(self.fill_values.len() as u64);
        for &value in &self.fill_values {
            payload.f64(value);
        }
        payload.u64(self.metadata.len() as u64);
        for (key, value) in &self.metadata {
            payload.str(key);
            payload.str(value);
        }
        payload.u64(forest.n_estimators() as u64);
        for tree in forest.trees() {
            payload.u64(tree.lengths.len() as u64);
            for (node, &length) in tree.nodes().zip(tree.lengths) {
                payload.f64(node.threshold);
                payload.u32(node.feature());
                payload.u32(node.base());
                payload.f64(length);
            }
        }
        let payload = payload.0;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len() + CHECKSUM_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&MODEL_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes
    }

    /// Parses a file's bytes; `path` only names the file in errors.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<ModelArtifact, ModelFileError> {
        let path_buf = || path.to_path_buf();
        let truncated = |expected: usize| ModelFileError::Truncated {
            path: path_buf(),
            expected: expected as u64,
            found: bytes.len() as u64,
        };
        let magic_len = bytes.len().min(MAGIC.len());
        if bytes[..magic_len] != MAGIC[..magic_len] {
            return Err(ModelFileError::NotAModel { path: path_buf() });
        }
        if bytes.len() < HEADER_LEN {
            return Err(truncated(HEADER_LEN));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
        if version > MODEL_FORMAT_VERSION {
            return Err(ModelFileError::NewerVersion {
                path: path_buf(),
                found: version,
                supported: MODEL_FORMAT_VERSION,
            });
        }
        let malformed = |reason: String| ModelFileError::Malformed {
            path: path_buf(),
            reason,
        };
        if version == 0 {
            return Err(malformed("format version 0 does not exist".to_owned()));
        }
        let payload_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());
        let expected = usize::try_from(payload_len)
            .ok()
            .and_then(|len| len.checked_add(HEADER_LEN + CHECKSUM_LEN))
            .ok_or_else(|| malformed(format!("impossible payload length {payload_len}")))?;
        if bytes.len() < expected {
            return Err(truncated(expected));
        }
        if bytes.len() > expected {
            return Err(malformed(format!(
                "{} bytes after the end of the model",
                bytes.len() - expected
            )));
        }
        let payload = &bytes[HEADER_LEN..expected - CHECKSUM_LEN];
        let stored = u32::from_le_bytes(
            bytes[expected - CHECKSUM_LEN..]
                .try_into()
                .unwrap_or_default(),
        );
        let computed = crc32fast::hash(payload);
        if stored != computed {
            return Err(ModelFileError::Checksum {
                path: path_buf(),
                stored,
                computed,
            });
        }
        parse_payload(payload).map_err(malformed)
    }
}

fn parse_payload(payload: &[u8]) -> Result<ModelArtifact, String> {
    let mut r = Reader(payload);
    let n_estimators = r.len("n_estimators", 0)?;
    let max_samples = match r.u8("max_samples")? {
        0 => MaxSamples::Auto,
        1 => MaxSamples::Count(r.len("max_samples", 0)?),
        2 => MaxSamples::Fraction(r.f64("max_samples")?),
        tag => return Err(format!("unknown max_samples kind {tag}")),
    };
    let max_features = r.f64("max_features")?;
    let contamination = match r.u8("contamination")? {
        0 => Contamination::Auto,
        1 => Contamination::Fraction(r.f64("contamination")?),
        tag => return Err(format!("unknown contamination kind {tag}")),
    };
    let seed = r.u64("seed")?;
    let params: IsolationForestValidParams = IsolationForest::params()
        .n_estimators(n_estimators)
        .max_samples(max_samples)
        .max_features(max_features)
        .contamination(contamination)
        .seed(seed)
        .check()
        .map_err(|error| format!("parameters: {error}"))?;
    let n_features = r.len("n_features", 0)?;
    let fitted_max_samples = r.len("max_samples_", 0)?;
    let height = r.u32("height")?;
    let offset = r.f64("offset")?;
    let n_names = r.len("feature names", 8)?;
    let feature_names = (0..n_names)
        .map(|_| r.string("feature name"))
        .collect::<Result<Vec<_>, _>>()?;
    let n_fill = r.len("fill values", 8)?;
    let fill_values = (0..n_fill)
        .map(|_| r.f64("fill value"))
        .collect::<Result<Vec<_>, _>>()?;
    let n_metadata = r.len("metadata", 16)?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n_metadata {
        let key = r.string("metadata key")?;
        let value = r.string("metadata value")?;
        metadata.insert(key, value);
    }
    let n_trees = r.len("trees", 8)?;
    let mut nodes = Vec::new();
    let mut path_lengths = Vec::new();
    let mut tree_starts = vec![0];
    for t in 0..n_trees {
        let n_nodes = r.len("nodes", 24)?;
        if n_nodes == 0 || n_nodes > i32::MAX as usize {
            return Err(format!("tree {t} has {n_nodes} nodes"));
        }
        for _ in 0..n_nodes {
            let threshold = r.f64("threshold")?;
            let feature = r.u32("feature")?;
            let base = r.u32("child index")?;
            if feature as usize >= n_features.min(MAX_COLUMNS) {
                return Err(format!("tree {t}: feature {feature} of {n_features}"));
            }
            let node = Node::new(threshold, feature, base);
            let length = r.f64("path length")?;
            nodes.push(node);
            path_lengths.push(length);
        }
        tree_starts.push(nodes.len());
    }
    check_trees(&nodes, &path_lengths, &tree_starts, n_features)?;
    if !r.0.is_empty() {
        return Err(format!("{} unread bytes at the end", r.0.len()));
    }
    let consistent = n_trees == n_estimators
        && n_features > 0
        && feature_names.len() == n_features
        && fill_values.len() == n_features
        && fill_values.iter().all(|v| v.is_finite())
        && fitted_max_samples > 0
        && (1..=MAX_HEIGHT).contains(&height)
        && offset.is_finite();
    if !consistent {
        return Err(format!(
            "inconsistent header: {n_trees} trees for n_estimators {n_estimators}, \
             {n_features} features, {} names, {} fill values, max_samples_ {fitted_max_samples}, \
             height {height}, offset {offset}",
            feature_names.len(),
            fill_values.len()
        ));
    }
    Ok(ModelArtifact {
        feature_names,
        fill_values,
        forest: IsolationForest::from_checked_nodes(
            params,
            n_features,
            fitted_max_samples,
            height,
            offset,
            &nodes,
            path_lengths,
            tree_starts,
        ),
        metadata,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Reads the payload front to back; every error names what it was reading.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(format!("the payload ends while reading {what}"));
        };
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take::<1>(what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.take(what).map(u32::from_le_bytes)
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.take(what).map(u64::from_le_bytes)
    }
    fn f64(&mut self, what: &str) -> Result<f64, String> {
        self.take(what).map(f64::from_le_bytes)
    }
    /// A count whose items take at least `item_bytes` each, so a corrupt count cannot make us
    /// allocate more than the file holds.
    fn len(&mut self, what: &str, item_bytes: usize) -> Result<usize, String> {
        let count = self.u64(what)?;
        match usize::try_from(count) {
            Ok(count) if count.saturating_mul(item_bytes) <= self.0.len() => Ok(count),
            _ => Err(format!("{what}: count {count} exceeds the file")),
        }
    }
    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.len(what, 1)?;
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::Matrix;

    fn artifact() -> ModelArtifact {
        let data: Vec<f64> = (0..600).map(|i| f64::from((i * 37) % 101) / 7.0).collect();
        let data = Matrix::from_rows(3, data).expect("finite");
        let forest = IsolationForest::params()
            .n_estimators(20)
            .contamination(Contamination::Fraction(0.1))
            .check()
            .expect("valid")
            .fit(&data)
            .expect("fits");
        ModelArtifact {
            feature_names: vec!["a".into(), "b".into(), "latency_ms".into()],
            fill_values: vec![1.0, 2.0, 3.5],
            forest,
            metadata: BTreeMap::from([("service".into(), "api".into())]),
        }
    }

    #[test]
    fn a_saved_model_loads_with_bit_identical_scores() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.bin");
        let original = artifact();
        original.save(&path).expect("saves");
        let loaded = ModelArtifact::load(&path).expect("loads");
        assert_eq!(loaded.feature_names, original.feature_names);
        assert_eq!(loaded.fill_values, original.fill_values);
        assert_eq!(loaded.metadata, original.metadata);
        assert_eq!(
            loaded.forest.offset().to_bits(),
            original.forest.offset().to_bits()
        );
        assert_eq!(
            loaded.forest.fitted_params(),
            original.forest.fitted_params()
        );
        for i in 0..200 {
            let row = [f64::from(i) / 10.0, f64::from(i % 13), -f64::from(i)];
            assert_eq!(
                loaded.forest.score_sample(&row).to_bits(),
                original.forest.score_sample(&row).to_bits()
            );
        }
        // Nothing is left behind but the model.
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn a_truncated_file_is_reported_as_truncated() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.bin");
        let bytes = artifact().to_bytes();
        for cut in [3, 10, HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&path, &bytes[..cut]).expect("writes");
            let error = ModelArtifact::load(&path).expect_err("truncated");
            assert!(matches!(error, ModelFileError::Truncated { .. }), "{error}");
            let message = error.to_string();
            assert!(
                message.contains("model.bin") && message.contains("truncated"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.bin");
        let mut bytes = artifact().to_bytes();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(&path, &bytes).expect("writes");
        let error = ModelArtifact::load(&path).expect_err("corrupt");
        assert!(matches!(error, ModelFileError::Checksum { .. }), "{error}");
        assert!(error.to_string().contains("model.bin"));
        assert!(error.to_string().contains("corrupt"));
    }

    #[test]
    fn a_newer_version_is_refused_by_name() {
        let mut bytes = artifact().to_bytes();
        bytes[8..12].copy_from_slice(&(MODEL_FORMAT_VERSION + 1).to_le_bytes());
        let error = ModelArtifact::from_bytes(&bytes, Path::new("m.bin")).expect_err("newer");
        assert!(
            matches!(error, ModelFileError::NewerVersion { found: 2, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("m.bin"));
    }

    #[test]
    fn other_files_are_not_models() {
        let error = ModelArtifact::from_bytes(b"{\"trees\": []}", Path::new("x.json"))
            .expect_err("not a model");
        assert!(matches!(error, ModelFileError::NotAModel { .. }));
        let error = ModelArtifact::load(Path::new("/nonexistent/model.bin")).expect_err("missing");
        assert!(error.to_string().contains("/nonexistent/model.bin"));
    }

    #[test]
    fn a_valid_checksum_over_bad_trees_is_malformed_not_a_panic() {
        let mut bytes = artifact().to_bytes();
        // Point the root of the last tree's child index far away, then fix the checksum.
        let end = bytes.len() - CHECKSUM_LEN;
        let last_node_base = end - 8 - 4;
        bytes[last_node_base..last_node_base + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&bytes[HEADER_LEN..end]);
        bytes[end..].copy_from_slice(&crc.to_le_bytes());
        let error = ModelArtifact::from_bytes(&bytes, Path::new("m.bin")).expect_err("malformed");
        assert!(matches!(error, ModelFileError::Malformed { .. }), "{error}");
    }
}
