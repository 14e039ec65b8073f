//! Offline commands of the service binary: `score-csv`, `train` and `score`. They read CSV files
//! (a header row, numeric cells; a column named `label` is ignored), fit or load a forest and
//! write one value per row, so operators can evaluate and train without the HTTP service.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};

use crate::forest::{Contamination, IsolationForest, Matrix, MaxSamples, ModelArtifact};

/// The column that holds ground truth in benchmark files; never a feature.
pub const LABEL_COLUMN: &str = "label";

/// Commands that work on CSV files and model files, without the HTTP service.
#[derive(Debug, Subcommand)]
pub enum OfflineCommand {
    /// Fit a forest on every row of a CSV and write each row's score_samples (lower = more
    /// anomalous), one per line, in row order.
    ScoreCsv(ScoreCsvArgs),
    /// Fit a forest on a CSV and save it as a model file.
    Train(TrainArgs),
    /// Score the rows of a CSV with a saved model, one value per line, in row order.
    Score(ScoreArgs),
}

/// Arguments of `score-csv`.
#[derive(Debug, Args)]
pub struct ScoreCsvArgs {
    /// CSV with a header row; numeric columns, `label` ignored.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the scores.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub forest: ForestArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Arguments of `train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// CSV with a header row; numeric columns, `label` ignored.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the model file.
    #[arg(long)]
    pub model_out: PathBuf,
    #[command(flatten)]
    pub forest: ForestArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Arguments of `score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A model file written by `train` (or by the service).
    #[arg(long)]
    pub model: PathBuf,
    /// CSV with a header row naming the model's features; other columns are ignored, a missing
    /// feature takes the model's fill value.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the values.
    #[arg(long)]
    pub output: PathBuf,
    /// Write decision_function (score_samples - offset; below 0 is an outlier) instead of
    /// score_samples.
    #[arg(long)]
    pub decision: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Forest parameters, as scikit-learn names them.
#[derive(Debug, Args)]
pub struct ForestArgs {
    /// Seed for every random choice.
    #[arg(long, default_value_t = crate::forest::DEFAULT_SEED)]
    pub seed: u64,
    /// Number of trees (n_estimators).
    #[arg(long, default_value_t = crate::forest::DEFAULT_N_ESTIMATORS, value_parser = parse_positive)]
    pub trees: usize,
    /// Rows per tree: `auto` (min(256, rows)), a count, or a fraction in (0, 1] such as 0.5.
    #[arg(long, default_value = "auto", value_parser = parse_max_samples)]
    pub max_samples: MaxSamples,
    /// Expected share of outliers: `auto` (offset -0.5) or a fraction in (0, 0.5].
    #[arg(long, default_value = "auto", value_parser = parse_contamination)]
    pub contamination: Contamination,
}

/// How to run: threads and timing output.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker threads for fitting and scoring (default: all cores).
    #[arg(long, value_parser = parse_positive)]
    pub threads: Option<usize>,
    /// Print a `timings:` line with the milliseconds of each stage to stderr.
    #[arg(long)]
    pub timings: bool,
}

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a positive whole number".to_owned()),
    }
}

fn parse_max_samples(text: &str) -> Result<MaxSamples, String> {
    if text == "auto" {
        return Ok(MaxSamples::Auto);
    }
    if let Ok(count) = text.parse::<usize>() {
        return if count > 0 {
            Ok(MaxSamples::Count(count))
        } else {
            Err("must be positive".to_owned())
        };
    }
    match text.parse::<f64>() {
        Ok(share) if share > 0.0 && share <= 1.0 => Ok(MaxSamples::Fraction(share)),
        _ => Err("expected `auto`, a positive count or a fraction in (0, 1]".to_owned()),
    }
}

fn parse_contamination(text: &str) -> Result<Contamination, String> {
    if text == "auto" {
        return Ok(Contamination::Auto);
    }
    match text.parse::<f64>() {
        Ok(share) if share > 0.0 && share <= 0.5 => Ok(Contamination::Fraction(share)),
        _ => Err("expected `auto` or a fraction in (0, 0.5]".to_owned()),
    }
}

/// Runs one offline command.
///
/// # Errors
/// Any failure, as one line for the operator: the file and what is wrong with it.
pub fn run(command: OfflineCommand) -> anyhow::Result<()> {
    let run_args = match &command {
        OfflineCommand::ScoreCsv(args) => &args.run,
        OfflineCommand::Train(args) => &args.run,
        OfflineCommand::Score(args) => &args.run,
    };
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = run_args.threads {
        pool = pool.num_threads(threads);
    }
    let pool = pool.build().context("starting worker threads")?;
    let mut timings = Timings::new(run_args.timings);
    pool.install(|| match &command {
        OfflineCommand::ScoreCsv(args) => score_csv(args, &mut timings),
        OfflineCommand::Train(args) => train(args, &mut timings),
        OfflineCommand::Score(args) => score(args, &mut timings),
    })?;
    timings.report();
    Ok(())
}

fn score_csv(args: &ScoreCsvArgs, timings: &mut Timings) -> anyhow::Result<()> {
    let table = read_csv(&args.input)?;
    timings.lap("read_ms");
    let forest = fit(&args.forest, &table.matrix, &args.input)?;
    timings.lap("fit_ms");
    let scores = forest.score_samples(&table.matrix);
    timings.lap("score_ms");
    write_values(&args.output, &scores)?;
    timings.lap("write_ms");
    Ok(())
}

fn train(args: &TrainArgs, timings: &mut Timings) -> anyhow::Result<()> {
    let table = read_csv(&args.input)?;
    timings.lap("read_ms");
    let forest = fit(&args.forest, &table.matrix, &args.input)?;
    timings.lap("fit_ms");
    let fill_values = column_medians(&table.matrix);
    let metadata = BTreeMap::from([
        ("source".to_owned(), "cli".to_owned()),
        ("input".to_owned(), args.input.display().to_string()),
        ("rows".to_owned(), table.matrix.n_rows().to_string()),
        ("trained_at".to_owned(), chrono::Utc::now().to_rfc3339()),
    ]);
    let artifact = ModelArtifact {
        feature_names: table.feature_names,
        fill_values,
        forest,
        metadata,
    };
    artifact.save(&args.model_out)?;
    timings.lap("save_ms");
    println!(
        "Trained {} trees on {} rows x {} features (offset {}); saved {}.",
        artifact.forest.n_estimators(),
        table.matrix.n_rows(),
        artifact.feature_names.len(),
        artifact.forest.offset(),
        args.model_out.display()
    );
    Ok(())
}

fn score(args: &ScoreArgs, timings: &mut Timings) -> anyhow::Result<()> {
    let artifact = ModelArtifact::load(&args.model)?;
    let table = read_csv(&args.input)?;
    timings.lap("read_ms");
    let columns: Vec<Option<usize>> = artifact
        .feature_names
        .iter()
        .map(|name| table.feature_names.iter().position(|column| column == name))
        .collect();
    let missing: Vec<&str> = artifact
        .feature_names
        .iter()
        .zip(&columns)
        .filter(|(_, column)| column.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    if missing.len() == columns.len() {
        bail!(
            "{}: none of the model's features ({}) is a column",
            args.input.display(),
            artifact.feature_names.join(", ")
        );
    }
    if !missing.is_empty() {
        eprintln!(
            "note: {}: missing feature columns take the model's fill values: {}",
            args.input.display(),
            missing.join(", ")
        );
    }
    let mut data = Vec::with_capacity(table.matrix.n_rows() * columns.len());
    for row in table.matrix.rows() {
        data.extend(
            columns
                .iter()
                .zip(&artifact.fill_values)
                .map(|(column, fill)| column.map_or(*fill, |c| row[c])),
        );
    }
    let matrix = Matrix::from_rows(columns.len(), data)
        .with_context(|| format!("{}: fill values", args.model.display()))?;
    let values = if args.decision {
        artifact.forest.decision_function(&matrix)
    } else {
        artifact.forest.score_samples(&matrix)
    };
    timings.lap("score_ms");
    write_values(&args.output, &values)?;
    timings.lap("write_ms");
    Ok(())
}

fn fit(args: &ForestArgs, matrix: &Matrix, input: &Path) -> anyhow::Result<IsolationForest> {
    let params = IsolationForest::params()
        .n_estimators(args.trees)
        .max_samples(args.max_samples)
        .contamination(args.contamination)
        .seed(args.seed)
        .check()?;
    params
        .fit(matrix)
        .with_context(|| format!("fitting on {}", input.display()))
}

/// A CSV's feature columns (all but `label`) as a matrix.
struct Table {
    feature_names: Vec<String>,
    matrix: Matrix,
}

/// Reads a CSV with a header row. Every cell of a feature column must be a finite number.
fn read_csv(path: &Path) -> anyhow::Result<Table> {
    let shown = path.display();
    let file = File::open(path).map_err(|error| anyhow!("{shown}: cannot open: {error}"))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let header = reader
        .headers()
        .map_err(|error| anyhow!("{shown}: reading the header: {error}"))?
        .clone();
    if header.is_empty() {
        bail!("{shown}: empty file (expected a header row)");
    }
    let features: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter(|(_, name)| *name != LABEL_COLUMN)
        .map(|(index, name)| (index, name.to_owned()))
        .collect();
    if features.is_empty() {
        bail!("{shown}: no feature columns (only `{LABEL_COLUMN}`)");
    }
    let mut data = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut row = 0usize;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => bail!("{shown}: {error}"),
        }
        row += 1;
        for (index, name) in &features {
            let cell = record.get(*index).unwrap_or_default();
            let value = std::str::from_utf8(cell)
                .ok()
                .and_then(|text| text.parse::<f64>().ok());
            let line = record.position().map_or(row + 1, |p| p.line() as usize);
            let column = index + 1;
            match value {
                Some(value) if value.is_finite() => data.push(value),
                Some(_) => bail!(
                    "{shown}: row {row} (line {line}), column {column} `{name}`: {:?} is not a \
                     finite number (NaN and infinities are refused)",
                    String::from_utf8_lossy(cell)
                ),
                None => bail!(
                    "{shown}: row {row} (line {line}), column {column} `{name}`: {:?} is not a number",
                    String::from_utf8_lossy(cell)
                ),
            }
        }
    }
    if row == 0 {
        bail!("{shown}: no data rows after the header");
    }
    let matrix =
        Matrix::from_rows(features.len(), data).map_err(|error| anyhow!("{shown}: {error}"))?;
    Ok(Table {
        feature_names: features.into_iter().map(|(_, name)| name).collect(),
        matrix,
    })
}

/// Writes one value per line, in the shortest form that reads back as the same f64.
fn write_values(path: &Path, values: &[f64]) -> anyhow::Result<()> {
    let shown = path.display();
    let file = File::create(path).map_err(|error| anyhow!("{shown}: cannot create: {error}"))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for value in values {
        writeln!(out, "{value}").map_err(|error| anyhow!("{shown}: writing: {error}"))?;
    }
    out.flush()
        .map_err(|error| anyhow!("{shown}: writing: {error}"))
}

/// Per column, the median: the fill value for a log that lacks the feature.
fn column_medians(matrix: &Matrix) -> Vec<f64> {
    let n_rows = matrix.n_rows();
    (0..matrix.n_cols())
        .map(|column| {
            let mut values: Vec<f64> = matrix.rows().map(|row| row[column]).collect();
            values.sort_by(f64::total_cmp);
            let mid = n_rows / 2;
            if n_rows % 2 == 1 {
                values[mid]
            } else {
                (values[mid - 1] + values[mid]) / 2.0
            }
        })
        .collect()
}

/// Wall-clock time of each stage, printed on one stderr line when asked for.
struct Timings {
    enabled: bool,
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Timings {
    fn new(enabled: bool) -> Self {
        Timings {
            enabled,
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps
            .push((name, (now - self.last).as_secs_f64() * 1000.0));
        self.last = now;
    }

    fn report(&self) {
        if !self.enabled {
            return;
        }
        let stage = |name| {
            self.laps
                .iter()
                .find(|(lap, _)| *lap == name)
                .map_or(0.0, |(_, ms)| *ms)
        };
        let mut line = String::from("timings:");
        for (name, ms) in &self.laps {
            line.push_str(&format!(" {name}={ms:.3}"));
        }
        line.push_str(&format!(
            " fit_score_ms={:.3}",
            stage("fit_ms") + stage("score_ms")
        ));
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_samples_accepts_auto_counts_and_fractions() {
        assert_eq!(parse_max_samples("auto"), Ok(MaxSamples::Auto));
        assert_eq!(parse_max_samples("256"), Ok(MaxSamples::Count(256)));
        assert_eq!(parse_max_samples("0.5"), Ok(MaxSamples::Fraction(0.5)));
        assert!(parse_max_samples("0").is_err());
        assert!(parse_max_samples("1.5").is_err());
        assert!(parse_max_samples("many").is_err());
    }

    #[test]
    fn contamination_accepts_auto_and_fractions_up_to_half() {
        assert_eq!(parse_contamination("auto"), Ok(Contamination::Auto));
        assert_eq!(
            parse_contamination("0.05"),
            Ok(Contamination::Fraction(0.05))
        );
        assert!(parse_contamination("0.6").is_err());
        assert!(parse_contamination("0").is_err());
    }

    #[test]
    fn medians_of_odd_and_even_columns() {
        let m = Matrix::from_rows(2, vec![1.0, 4.0, 3.0, 1.0, 2.0, 2.0, 9.0, 3.0]).expect("ok");
        assert_eq!(column_medians(&m), vec![2.5, 2.5]);
    }
}
