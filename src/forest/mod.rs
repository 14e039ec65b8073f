//! TEMPORARY SHIM - not to be committed.
#![allow(unused, clippy::all)]
use std::collections::BTreeMap;
use std::path::Path;
#[derive(Debug, thiserror::Error)]
#[error("forest")]
pub struct ForestError;
#[derive(Debug, thiserror::Error)]
#[error("file")]
pub struct ModelFileError;
#[derive(Debug, Clone)]
pub struct Matrix;
impl Matrix {
    pub fn from_rows(n_cols: usize, data: Vec<f64>) -> Result<Matrix, ForestError> {
        todo!()
    }
    pub fn row(&self, i: usize) -> &[f64] {
        todo!()
    }
    pub fn n_rows(&self) -> usize {
        todo!()
    }
    pub fn n_cols(&self) -> usize {
        todo!()
    }
}
pub enum MaxSamples {
    Auto,
    Count(usize),
    Fraction(f64),
}
pub enum Contamination {
    Auto,
    Fraction(f64),
}
pub struct Params;
pub struct Checked;
impl Params {
    pub fn n_estimators(self, n: usize) -> Self {
        self
    }
    pub fn max_samples(self, n: MaxSamples) -> Self {
        self
    }
    pub fn contamination(self, n: Contamination) -> Self {
        self
    }
    pub fn seed(self, n: u64) -> Self {
        self
    }
    pub fn check(self) -> Result<Checked, ForestError> {
        todo!()
    }
}
impl Checked {
    pub fn fit(&self, m: &Matrix) -> Result<IsolationForest, ForestError> {
        todo!()
    }
}
#[derive(Debug, Clone)]
pub struct IsolationForest;
impl IsolationForest {
    pub fn params() -> Params {
        Params
    }
    pub fn score_sample(&self, row: &[f64]) -> f64 {
        todo!()
    }
    pub fn decision_function_one(&self, row: &[f64]) -> f64 {
        todo!()
    }
    pub fn score_samples(&self, m: &Matrix) -> Vec<f64> {
        todo!()
    }
    pub fn offset(&self) -> f64 {
        todo!()
    }
    pub fn with_offset(self, offset: f64) -> Self {
        todo!()
    }
}
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    pub feature_names: Vec<String>,
    pub fill_values: Vec<f64>,
    pub forest: IsolationForest,
    pub metadata: BTreeMap<String, String>,
}
impl ModelArtifact {
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        todo!()
    }
    pub fn load(path: &Path) -> Result<ModelArtifact, ModelFileError> {
        todo!()
    }
}
