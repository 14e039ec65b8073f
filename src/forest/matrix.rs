//! The dense, row-major sample matrix the forest fits on and scores.

use crate::forest::{ForestError, MAX_COLUMNS};

/// Rows of `n_cols` finite values, stored contiguously in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    data: Vec<f64>,
    n_cols: usize,
}

impl Matrix {
    /// Builds a matrix from row-major values. Zero rows are allowed (scoring them gives nothing);
    /// fitting on them is refused.
    ///
    /// # Errors
    /// [`ForestError::NoColumns`] when `n_cols` is 0, [`ForestError::TooManyColumns`] beyond
    /// [`MAX_COLUMNS`], [`ForestError::Ragged`] when `data` does not
    /// split into whole rows, [`ForestError::NonFinite`] (with the 0-based row and column) for the
    /// first NaN or ±inf. Isolation forests split on value ranges, where NaN has no place and an
    /// infinite bound makes every uniform threshold infinite, so I refuse them instead of guessing.
    pub fn from_rows(n_cols: usize, data: Vec<f64>) -> Result<Matrix, ForestError> {
        if n_cols == 0 {
            return Err(ForestError::NoColumns);
        }
        if n_cols > MAX_COLUMNS {
            return Err(ForestError::TooManyColumns { n_cols });
        }
        if !data.len().is_multiple_of(n_cols) {
            return Err(ForestError::Ragged {
                len: data.len(),
                n_cols,
            });
        }
        if let Some(position) = data.iter().position(|value| !value.is_finite()) {
            return Err(ForestError::NonFinite {
                row: position / n_cols,
                column: position % n_cols,
                value: data[position],
            });
        }
        Ok(Matrix { data, n_cols })
    }

    /// Row `i`.
    ///
    /// # Panics
    /// When `i >= self.n_rows()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// The number of rows.
    pub fn n_rows(&self) -> usize {
        self.data.len() / self.n_cols
    }

    /// The number of columns (features).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// All values, row after row.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// The rows in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f64]> + '_ {
        self.data.chunks_exact(self.n_cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_laid_out_row_major() {
        let m = Matrix::from_rows(2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("valid");
        assert_eq!(m.n_rows(), 3);
        assert_eq!(m.n_cols(), 2);
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(m.rows().count(), 3);
    }

    #[test]
    fn nan_is_refused_with_its_row_and_column() {
        let error = Matrix::from_rows(2, vec![1.0, 2.0, 3.0, f64::NAN]).unwrap_err();
        assert!(matches!(
            error,
            ForestError::NonFinite {
                row: 1,
                column: 1,
                ..
            }
        ));
        assert!(error.to_string().contains("row 1, column 1"));
    }

    #[test]
    fn infinity_is_refused() {
        let error = Matrix::from_rows(1, vec![f64::NEG_INFINITY]).unwrap_err();
        assert!(matches!(error, ForestError::NonFinite { row: 0, .. }));
    }

    #[test]
    fn ragged_and_columnless_data_are_refused() {
        assert_eq!(
            Matrix::from_rows(2, vec![1.0, 2.0, 3.0]),
            Err(ForestError::Ragged { len: 3, n_cols: 2 })
        );
        assert_eq!(Matrix::from_rows(0, vec![]), Err(ForestError::NoColumns));
    }

    #[test]
    fn an_empty_matrix_has_no_rows() {
        let m = Matrix::from_rows(3, vec![]).expect("zero rows are allowed");
        assert_eq!(m.n_rows(), 0);
    }
}
