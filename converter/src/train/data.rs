//! Training data: a CSV read into a numeric [`Table`], a chronological [`Split`], per-column scalers
//! fitted on the training rows, and sliding [`Windows`] in model units.

use std::ops::Range;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

/// Header names that mark a timestamp column when none is given.
const TIME_NAMES: [&str; 3] = ["date", "time", "timestamp"];

/// A numeric table read from CSV: header names, and the timestamp column kept as strings.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Names of the numeric columns, in file order (the timestamp column is not among them).
    pub columns: Vec<String>,
    /// Number of data rows.
    pub rows: usize,
    /// `rows × columns` values, row-major.
    pub values: Vec<f32>,
    /// The timestamp column, one string per row, when the file has one.
    pub timestamps: Option<Vec<String>>,
}

impl Table {
    /// Reads a CSV file with a header row. A column whose header is `date`, `time` or `timestamp`
    /// (case-insensitive), or the one named by `time_column`, is the timestamp column; every other
    /// column must hold finite numbers. Errors name the file, the 1-based line and the column.
    pub fn read_csv(path: &Path, time_column: Option<&str>) -> Result<Table> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading CSV file {}", path.display()))?;
        Self::parse_csv(&text, time_column).with_context(|| format!("in {}", path.display()))
    }

    /// [`Table::read_csv`] on text already in memory; errors name the line and column.
    pub fn parse_csv(text: &str, time_column: Option<&str>) -> Result<Table> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((header_line, header)) = lines.next() else {
            bail!("the file is empty; expected a header row of column names");
        };
        let names = split_fields(header).with_context(|| format!("line {header_line}"))?;
        let names: Vec<String> = names.into_iter().map(|n| n.trim().to_string()).collect();
        for (i, name) in names.iter().enumerate() {
            ensure!(
                !name.is_empty(),
                "line {header_line}: column {} has an empty name",
                i + 1
            );
            if let Some(j) = names[..i].iter().position(|n| n == name) {
                bail!(
                    "line {header_line}: column name '{name}' appears twice (columns {} and {})",
                    j + 1,
                    i + 1
                );
            }
        }
        let time_index = match time_column {
            Some(wanted) => Some(names.iter().position(|n| n == wanted).with_context(|| {
                format!(
                    "timestamp column '{wanted}' is not in the header; columns: {}",
                    names.join(", ")
                )
            })?),
            None => names
                .iter()
                .position(|n| TIME_NAMES.contains(&n.to_ascii_lowercase().as_str())),
        };
        let columns: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != time_index)
            .map(|(_, n)| n.clone())
            .collect();
        ensure!(
            !columns.is_empty(),
            "line {header_line}: the file has no numeric columns"
        );
        let mut values = Vec::new();
        let mut timestamps = time_index.map(|_| Vec::new());
        let mut rows = 0;
        for (line, text) in lines {
            let fields = split_fields(text).with_context(|| format!("line {line}"))?;
            ensure!(
                fields.len() == names.len(),
                "line {line}: {} fields, but the header has {} columns",
                fields.len(),
                names.len()
            );
            for (i, field) in fields.iter().enumerate() {
                if Some(i) == time_index {
                    if let Some(t) = timestamps.as_mut() {
                        t.push(field.trim().to_string());
                    }
                    continue;
                }
                let field = field.trim();
                let value: f32 = field.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "line {line}, column {} ('{}'): '{field}' is not a number",
                        i + 1,
                        names[i]
                    )
                })?;
                ensure!(
                    value.is_finite(),
                    "line {line}, column {} ('{}'): '{field}' is not a finite number",
                    i + 1,
                    names[i]
                );
                values.push(value);
            }
            rows += 1;
        }
        ensure!(rows > 0, "the file has a header but no data rows");
        Ok(Table {
            columns,
            rows,
            values,
            timestamps,
        })
    }

    /// Index of the numeric column called `name`; the error lists the available columns.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == name)
            .with_context(|| {
                format!(
                    "no column '{name}'; available columns: {}",
                    self.columns.join(", ")
                )
            })
    }

    /// The value at `row` of numeric column `column`.
    pub fn value(&self, row: usize, column: usize) -> f32 {
        self.values[row * self.columns.len() + column]
    }
}

/// Splits one CSV record on commas; a field may be double-quoted, with `""` for a quote inside.
fn split_fields(line: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (',', false) => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            _ => field.push(c),
        }
    }
    ensure!(!quoted, "a quoted field is not closed");
    fields.push(field);
    Ok(fields)
}

/// A chronological split of a table's rows into train, validation and test. Validation and test start
/// `window` rows early so that their first window is complete (the Informer protocol).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Split {
    /// Row counts.
    Rows {
        /// Training rows, from the start.
        train: usize,
        /// Validation rows, after the training rows.
        val: usize,
        /// Test rows, after the validation rows.
        test: usize,
    },
    /// Fractions of the table's rows (rounded down; they must sum to at most 1).
    Fractions {
        /// Fraction for training.
        train: f64,
        /// Fraction for validation.
        val: f64,
        /// Fraction for testing.
        test: f64,
    },
}

impl Split {
    /// The row ranges `[train, val, test]` of a table of `rows` rows for windows of `window` rows.
    /// Validation and test begin `window` rows before their own first row.
    pub fn ranges(&self, rows: usize, window: usize) -> Result<[Range<usize>; 3]> {
        let (train, val, test) = match *self {
            Split::Rows { train, val, test } => (train, val, test),
            Split::Fractions { train, val, test } => {
                for (name, f) in [("train", train), ("val", val), ("test", test)] {
                    ensure!(
                        (0.0..=1.0).contains(&f),
                        "split fraction {name} = {f} is not between 0 and 1"
                    );
                }
                ensure!(
                    train + val + test <= 1.0 + 1e-9,
                    "split fractions {train} + {val} + {test} add up to more than 1"
                );
                let n = rows as f64;
                (
                    (n * train).floor() as usize,
                    (n * val).floor() as usize,
                    (n * test).floor() as usize,
                )
            }
        };
        let end = train
            .checked_add(val)
            .and_then(|v| v.checked_add(test))
            .context("split sizes overflow")?;
        ensure!(
            end <= rows,
            "the split needs {train} + {val} + {test} = {end} rows, but the table has {rows}"
        );
        ensure!(
            train >= window,
            "the training split has {train} rows, fewer than one window of {window}"
        );
        Ok([
            0..train,
            train - window..train + val,
            train + val - window..end,
        ])
    }
}

/// Per-column affine scaling: `model = (raw - offset) / scale`, so `raw = model × scale + offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Subtracted from raw values.
    pub offset: f32,
    /// Raw units per model unit; never zero.
    pub scale: f32,
}

impl Affine {
    /// The identity scaling.
    pub const IDENTITY: Affine = Affine {
        offset: 0.0,
        scale: 1.0,
    };

    /// Raw units to model units.
    pub fn to_model(&self, raw: f32) -> f32 {
        (raw - self.offset) / self.scale
    }

    /// Model units to raw units.
    pub fn to_raw(&self, model: f32) -> f32 {
        model * self.scale + self.offset
    }
}

/// How a column is scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleKind {
    /// Zero mean and unit (population) standard deviation on the training rows.
    ZScore,
    /// The training rows' minimum maps to 0 and maximum to 1.
    MinMax,
    /// A physical range given by the user maps to `[0, 1]`.
    Range {
        /// Raw value that maps to 0.
        min: f32,
        /// Raw value that maps to 1.
        max: f32,
    },
}

/// Fits one scaler per column on the training rows only. A constant column gets scale 1, so it still
/// maps to finite values.
pub fn fit_scalers(
    table: &Table,
    columns: &[usize],
    kinds: &[ScaleKind],
    train_rows: Range<usize>,
) -> Result<Vec<Affine>> {
    ensure!(
        columns.len() == kinds.len(),
        "{} columns but {} scaler kinds",
        columns.len(),
        kinds.len()
    );
    ensure!(
        !train_rows.is_empty() && train_rows.end <= table.rows,
        "training rows {train_rows:?} are empty or beyond the table's {} rows",
        table.rows
    );
    columns
        .iter()
        .zip(kinds)
        .map(|(&column, kind)| {
            ensure!(
                column < table.columns.len(),
                "column index {column} is beyond the table's {} columns",
                table.columns.len()
            );
            let values = train_rows
                .clone()
                .map(|r| f64::from(table.value(r, column)));
            let nonzero = |s: f64| if s > 0.0 && s.is_finite() { s } else { 1.0 };
            Ok(match *kind {
                ScaleKind::ZScore => {
                    let n = train_rows.len() as f64;
                    let mean = values.clone().sum::<f64>() / n;
                    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                    Affine {
                        offset: mean as f32,
                        scale: nonzero(var.sqrt()) as f32,
                    }
                }
                ScaleKind::MinMax => {
                    let (lo, hi) = values
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                            (lo.min(v), hi.max(v))
                        });
                    Affine {
                        offset: lo as f32,
                        scale: nonzero(hi - lo) as f32,
                    }
                }
                ScaleKind::Range { min, max } => {
                    ensure!(
                        min.is_finite() && max.is_finite() && max > min,
                        "column '{}': range {min}:{max} is empty or not finite",
                        table.columns[column]
                    );
                    Affine {
                        offset: min,
                        scale: max - min,
                    }
                }
            })
        })
        .collect()
}

/// Sliding windows in model units: each pairs `window` input rows with the `horizon` rows after them.
#[derive(Clone, Debug, PartialEq)]
pub struct Windows {
    /// Input timesteps per window.
    pub window: usize,
    /// Input features per timestep.
    pub features: usize,
    /// Output timesteps per window.
    pub horizon: usize,
    /// Target values per output timestep.
    pub targets: usize,
    /// `n × window × features` values.
    pub inputs: Vec<f32>,
    /// `n × horizon × targets` values.
    pub outputs: Vec<f32>,
}

impl Windows {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.inputs.len() / (self.window * self.features).max(1)
    }

    /// Whether there are no windows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inputs of window `i`, `window × features` values.
    pub fn input(&self, i: usize) -> &[f32] {
        let n = self.window * self.features;
        &self.inputs[i * n..(i + 1) * n]
    }

    /// Outputs of window `i`, `horizon × targets` values.
    pub fn output(&self, i: usize) -> &[f32] {
        let n = self.horizon * self.targets;
        &self.outputs[i * n..(i + 1) * n]
    }

    /// Every window of `rows` with a step of `stride` rows. Output step 0 is the row right after the
    /// window. Errors if the rows are too few for one window.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        table: &Table,
        rows: Range<usize>,
        inputs: &[usize],
        targets: &[usize],
        input_scalers: &[Affine],
        target_scalers: &[Affine],
        window: usize,
        horizon: usize,
        stride: usize,
    ) -> Result<Windows> {
        ensure!(window > 0, "the window must be at least one row");
        ensure!(horizon > 0, "the horizon must be at least one row");
        ensure!(stride > 0, "the stride must be at least one row");
        ensure!(
            !inputs.is_empty() && !targets.is_empty(),
            "choose at least one input and one target column"
        );
        ensure!(
            inputs.len() == input_scalers.len() && targets.len() == target_scalers.len(),
            "{} inputs with {} scalers, {} targets with {} scalers",
            inputs.len(),
            input_scalers.len(),
            targets.len(),
            target_scalers.len()
        );
        let width = table.columns.len();
        for &c in inputs.iter().chain(targets) {
            ensure!(
                c < width,
                "column index {c} is beyond the table's {width} columns"
            );
        }
        ensure!(
            rows.end <= table.rows,
            "rows {rows:?} go beyond the table's {} rows",
            table.rows
        );
        let span = window + horizon;
        ensure!(
            rows.len() >= span,
            "rows {}..{} hold {} rows; one window of {window} plus a horizon of {horizon} needs {span}",
            rows.start,
            rows.end,
            rows.len()
        );
        let count = (rows.len() - span) / stride + 1;
        let mut x = Vec::with_capacity(count * window * inputs.len());
        let mut y = Vec::with_capacity(count * horizon * targets.len());
        for k in 0..count {
            let start = rows.start + k * stride;
            for r in start..start + window {
                for (&c, s) in inputs.iter().zip(input_scalers) {
                    x.push(s.to_model(table.value(r, c)));
                }
            }
            for r in start + window..start + span {
                for (&c, s) in targets.iter().zip(target_scalers) {
                    y.push(s.to_model(table.value(r, c)));
                }
            }
        }
        Ok(Windows {
            window,
            features: inputs.len(),
            horizon,
            targets: targets.len(),
            inputs: x,
            outputs: y,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<Table> {
        Table::parse_csv(text, None)
    }

    fn err(text: &str) -> String {
        format!("{:#}", table(text).unwrap_err())
    }

    #[test]
    fn reads_header_timestamps_and_values() {
        let t = table("date,a,b\n2020-01-01,1,2.5\n2020-01-02,-3,4e1\n").unwrap();
        assert_eq!(t.columns, ["a", "b"]);
        assert_eq!(t.rows, 2);
        assert_eq!(t.values, [1.0, 2.5, -3.0, 40.0]);
        assert_eq!(
            t.timestamps.as_deref(),
            Some(&["2020-01-01".to_string(), "2020-01-02".to_string()][..])
        );
        assert_eq!(t.column("b").unwrap(), 1);
        let missing = format!("{:#}", t.column("c").unwrap_err());
        assert!(
            missing.contains("'c'") && missing.contains("a, b"),
            "{missing}"
        );
    }

    #[test]
    fn quoted_fields_and_named_time_column() {
        let t = Table::parse_csv(
            "\"when, exactly\",x\n\"1, 2\",\"3\"\r\n",
            Some("when, exactly"),
        )
        .unwrap();
        assert_eq!(t.columns, ["x"]);
        assert_eq!(t.values, [3.0]);
        assert_eq!(t.timestamps.unwrap(), ["1, 2"]);
    }

    #[test]
    fn bad_csv_errors_name_line_and_column() {
        let e = err("a,b\n1,2\n3,x\n");
        assert!(
            e.contains("line 3, column 2 ('b')") && e.contains("'x'"),
            "{e}"
        );
        let e = err("a,b\n1,2\n3,NaN\n");
        assert!(
            e.contains("line 3, column 2") && e.contains("finite"),
            "{e}"
        );
        let e = err("a,b\n1,2\n3\n");
        assert!(
            e.contains("line 3: 1 fields") && e.contains("2 columns"),
            "{e}"
        );
        let e = err("a,b\n1,2,3\n");
        assert!(e.contains("line 2: 3 fields"), "{e}");
        let e = err("a,a\n1,2\n");
        assert!(e.contains("appears twice"), "{e}");
        let e = err("a,b\n");
        assert!(e.contains("no data rows"), "{e}");
        let e = err("");
        assert!(e.contains("empty"), "{e}");
        let e = err("a,b\n\"1,2\n");
        assert!(e.contains("line 2") && e.contains("not closed"), "{e}");
        let e = format!(
            "{:#}",
            Table::parse_csv("a,b\n1,2\n", Some("when")).unwrap_err()
        );
        assert!(e.contains("'when'") && e.contains("a, b"), "{e}");
        let e = format!(
            "{:#}",
            Table::read_csv(Path::new("/nonexistent/x.csv"), None).unwrap_err()
        );
        assert!(e.contains("/nonexistent/x.csv"), "{e}");
    }

    #[test]
    fn informer_borders_for_etth1() {
        let split = Split::Rows {
            train: 12 * 30 * 24,
            val: 4 * 30 * 24,
            test: 4 * 30 * 24,
        };
        let [train, val, test] = split.ranges(17420, 96).unwrap();
        assert_eq!(train, 0..8640);
        assert_eq!(val, 8640 - 96..11520);
        assert_eq!(test, 11520 - 96..14400);
        assert!(split.ranges(14399, 96).is_err());
        let [train, val, test] = Split::Fractions {
            train: 0.7,
            val: 0.1,
            test: 0.2,
        }
        .ranges(1000, 10)
        .unwrap();
        assert_eq!((train, val, test), (0..700, 690..800, 790..1000));
        assert!(Split::Fractions {
            train: 0.7,
            val: 0.3,
            test: 0.2
        }
        .ranges(1000, 10)
        .is_err());
    }

    #[test]
    fn scalers_fit_on_train_rows_only() {
        let t = table("a,b\n1,5\n3,5\n100,-7\n").unwrap();
        let s = fit_scalers(
            &t,
            &[0, 1, 0],
            &[
                ScaleKind::ZScore,
                ScaleKind::MinMax,
                ScaleKind::Range { min: 0.0, max: 4.0 },
            ],
            0..2,
        )
        .unwrap();
        assert_eq!(
            s[0],
            Affine {
                offset: 2.0,
                scale: 1.0
            }
        );
        // Constant on the training rows: scale 1, not a division by zero.
        assert_eq!(
            s[1],
            Affine {
                offset: 5.0,
                scale: 1.0
            }
        );
        assert_eq!(
            s[2],
            Affine {
                offset: 0.0,
                scale: 4.0
            }
        );
        assert_eq!(s[0].to_raw(s[0].to_model(7.0)), 7.0);
        assert!(fit_scalers(&t, &[0], &[ScaleKind::Range { min: 1.0, max: 1.0 }], 0..2).is_err());
    }

    #[test]
    fn windows_pair_inputs_with_following_rows() {
        let text: String = std::iter::once("a,b\n".to_string())
            .chain((0..10).map(|i| format!("{i},{}\n", 10 * i)))
            .collect();
        let t = table(&text).unwrap();
        let id = [Affine::IDENTITY; 2];
        let w = Windows::build(&t, 1..9, &[0, 1], &[1], &id, &id[..1], 3, 2, 2).unwrap();
        // Rows 1..9 hold 8 rows; spans of 5 start at 1 and 3 (5 would need row 9).
        assert_eq!(w.len(), 2);
        assert_eq!(w.input(0), [1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
        assert_eq!(w.output(0), [40.0, 50.0]);
        assert_eq!(w.output(1), [60.0, 70.0]);
        let e = format!(
            "{:#}",
            Windows::build(&t, 0..4, &[0], &[1], &id[..1], &id[..1], 3, 2, 1).unwrap_err()
        );
        assert!(e.contains("needs 5"), "{e}");
    }
}
