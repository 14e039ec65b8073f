//! End to end: the offline commands of the built binary on small CSV files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_aioops-mcp-iforest");

/// 120 points on a small grid plus one far outlier (the last row), with a `label` column.
fn small_csv() -> String {
    let mut csv = String::from("cpu,latency_ms,label\n");
    for i in 0..120 {
        let cpu = f64::from(i % 12) * 0.5 + 10.0;
        let latency = f64::from((i * 7) % 10) + 100.0;
        csv.push_str(&format!("{cpu},{latency},0\n"));
    }
    csv.push_str("95.5,9000,1\n");
    csv
}

struct Workspace {
    dir: TempDir,
}

impl Workspace {
    fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).expect("writes");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn read_values(path: &Path) -> Vec<f64> {
    fs::read_to_string(path)
        .expect("output exists")
        .lines()
        .map(|line| line.parse().expect("one number per line"))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failed command: non-zero exit and exactly one line on stderr, which is returned.
fn single_error_line(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    let text = stderr(output);
    assert_eq!(text.lines().count(), 1, "one line expected, got: {text}");
    text
}

#[test]
fn score_csv_writes_one_score_per_row_and_the_outlier_scores_lowest() {
    // Arrange
    let ws = Workspace::new();
    let input = ws.file("data.csv", &small_csv());
    let output = ws.path("scores.txt");

    // Act
    let result = run(&[
        "score-csv",
        "--input",
        arg(&input),
        "--output",
        arg(&output),
        "--seed",
        "3",
    ]);

    // Assert
    assert!(result.status.success(), "{}", stderr(&result));
    let scores = read_values(&output);
    assert_eq!(scores.len(), 121);
    assert!(scores.iter().all(|s| (-1.0..0.0).contains(s)));
    let lowest = (0..scores.len())
        .min_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .expect("rows");
    assert_eq!(lowest, 120);
}

#[test]
fn score_csv_is_deterministic_across_runs_and_thread_counts() {
    let ws = Workspace::new();
    let input = ws.file("data.csv", &small_csv());
    let mut outputs = Vec::new();
    for (name, threads) in [("a.txt", "1"), ("b.txt", "1"), ("c.txt", "4")] {
        let output = ws.path(name);
        let result = run(&[
            "score-csv",
            "--input",
            arg(&input),
            "--output",
            arg(&output),
            "--seed",
            "9",
            "--threads",
            threads,
            "--trees",
            "50",
            "--max-samples",
            "64",
        ]);
        assert!(result.status.success(), "{}", stderr(&result));
        outputs.push(fs::read(&output).expect("output"));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn the_label_column_is_ignored() {
    let ws = Workspace::new();
    let with_label = ws.file("with.csv", &small_csv());
    let without: String = small_csv()
        .lines()
        .map(|line| format!("{}\n", line.rsplit_once(',').expect("label").0))
        .collect();
    let without_label = ws.file("without.csv", &without);
    for (input, output) in [(&with_label, "with.txt"), (&without_label, "without.txt")] {
        let result = run(&[
            "score-csv",
            "--input",
            arg(input),
            "--output",
            arg(&ws.path(output)),
        ]);
        assert!(result.status.success(), "{}", stderr(&result));
    }
    assert_eq!(
        fs::read(ws.path("with.txt")).expect("with"),
        fs::read(ws.path("without.txt")).expect("without")
    );
}

#[test]
fn train_then_score_reproduces_score_csv_exactly() {
    let ws = Workspace::new();
    let input = ws.file("data.csv", &small_csv());
    let model = ws.path("model.bin");
    let trained = run(&[
        "train",
        "--input",
        arg(&input),
        "--model-out",
        arg(&model),
        "--seed",
        "5",
        "--contamination",
        "0.05",
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let scored = run(&[
        "score",
        "--model",
        arg(&model),
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("scores.txt")),
    ]);
    assert!(scored.status.success(), "{}", stderr(&scored));
    let fitted = run(&[
        "score-csv",
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("direct.txt")),
        "--seed",
        "5",
    ]);
    assert!(fitted.status.success(), "{}", stderr(&fitted));
    assert_eq!(
        fs::read(ws.path("scores.txt")).expect("scores"),
        fs::read(ws.path("direct.txt")).expect("direct")
    );
    // With contamination 0.05 the outlier (and a few more rows) fall below the offset.
    let decided = run(&[
        "score",
        "--model",
        arg(&model),
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("decision.txt")),
        "--decision",
    ]);
    assert!(decided.status.success(), "{}", stderr(&decided));
    let decision = read_values(&ws.path("decision.txt"));
    assert!(decision[120] < 0.0);
    let outliers = decision.iter().filter(|d| **d < 0.0).count();
    assert!((1..=10).contains(&outliers), "{outliers} outliers");
}

#[test]
fn timings_are_printed_on_request() {
    let ws = Workspace::new();
    let input = ws.file("data.csv", &small_csv());
    let result = run(&[
        "score-csv",
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("s.txt")),
        "--timings",
        "--threads",
        "1",
    ]);
    assert!(result.status.success());
    let text = stderr(&result);
    assert!(
        text.starts_with("timings:") && text.contains("fit_score_ms="),
        "{text}"
    );
}

#[test]
fn a_missing_input_file_is_one_error_line_naming_it() {
    let ws = Workspace::new();
    let missing = ws.path("nope.csv");
    let result = run(&[
        "score-csv",
        "--input",
        arg(&missing),
        "--output",
        arg(&ws.path("s.txt")),
    ]);
    let line = single_error_line(&result);
    assert!(
        line.contains("nope.csv") && line.contains("cannot open"),
        "{line}"
    );
}

#[test]
fn a_non_numeric_cell_is_reported_with_its_row_and_column() {
    let ws = Workspace::new();
    let input = ws.file("bad.csv", "a,b,label\n1,2,0\n3,oops,0\n");
    let result = run(&[
        "score-csv",
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("s.txt")),
    ]);
    let line = single_error_line(&result);
    assert!(
        line.contains("row 2")
            && line.contains("column 2")
            && line.contains("`b`")
            && line.contains("\"oops\""),
        "{line}"
    );
}

#[test]
fn nan_and_infinite_cells_are_refused_with_their_position() {
    let ws = Workspace::new();
    let input = ws.file("nan.csv", "a,b\n1,2\n3,4\nNaN,5\n");
    let result = run(&[
        "score-csv",
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("s.txt")),
    ]);
    let line = single_error_line(&result);
    assert!(
        line.contains("row 3") && line.contains("not a finite number"),
        "{line}"
    );
}

#[test]
fn a_header_without_rows_is_an_error() {
    let ws = Workspace::new();
    let input = ws.file("empty.csv", "a,b,label\n");
    let result = run(&[
        "score-csv",
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("s.txt")),
    ]);
    let line = single_error_line(&result);
    assert!(line.contains("no data rows"), "{line}");
}

#[test]
fn bad_flags_are_one_error_line() {
    let ws = Workspace::new();
    let input = ws.file("data.csv", &small_csv());
    let output = ws.path("s.txt");
    for bad in [
        ["--trees", "0"],
        ["--contamination", "0.9"],
        ["--max-samples", "lots"],
        ["--threads", "0"],
        ["--bogus", "1"],
    ] {
        let mut args = vec![
            "score-csv",
            "--input",
            arg(&input),
            "--output",
            arg(&output),
        ];
        args.extend(bad);
        let result = run(&args);
        let line = single_error_line(&result);
        assert!(line.starts_with("error:"), "{bad:?}: {line}");
    }
    let result = run(&["score-csv", "--input", arg(&input)]);
    let line = single_error_line(&result);
    assert!(line.contains("--output"), "{line}");
}

#[test]
fn a_corrupt_model_file_is_one_error_line_naming_it() {
    let ws = Workspace::new();
    let input = ws.file("data.csv", &small_csv());
    let model = ws.path("model.bin");
    let trained = run(&["train", "--input", arg(&input), "--model-out", arg(&model)]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let mut bytes = fs::read(&model).expect("model");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&model, &bytes).expect("writes");
    let result = run(&[
        "score",
        "--model",
        arg(&model),
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("s.txt")),
    ]);
    let line = single_error_line(&result);
    assert!(
        line.contains("model.bin") && line.contains("checksum"),
        "{line}"
    );
    fs::write(&model, &bytes[..bytes.len() / 3]).expect("writes");
    let result = run(&[
        "score",
        "--model",
        arg(&model),
        "--input",
        arg(&input),
        "--output",
        arg(&ws.path("s.txt")),
    ]);
    let line = single_error_line(&result);
    assert!(
        line.contains("model.bin") && line.contains("truncated"),
        "{line}"
    );
}
