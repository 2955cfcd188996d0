//! Reading the labelled CSV: RFC 4180 via the `csv` crate after a strict
//! quoting check (`quoting.rs`), with every problem reported as
//! `file:line: what is wrong. what to do`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Result, bail};

use crate::params::{EmptySentences, IngestParams};

/// One data row as [`scan`] hands it over, borrowed from the record.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// 0-based data row (header excluded) in the CSV.
    pub row_id: i64,
    pub sentence: &'a str,
    pub label: i64,
    /// The value of `ingest.group_column`, when set.
    pub group: Option<&'a str>,
}

/// What [`scan`] found besides the rows.
#[derive(Debug)]
pub struct Scanned {
    /// Class names, index = class id.
    pub classes: Vec<String>,
    pub dropped_empty: usize,
}

/// Checks the CSV and calls `each` with every usable row in file order
/// (empty sentences dropped or refused per `ingest.empty_sentences`),
/// holding one record at a time: the callback decides what is kept.
pub fn scan(
    path: &Path,
    params: &IngestParams,
    mut each: impl FnMut(RowRef) -> Result<()>,
) -> Result<Scanned> {
    let shown = path.display();
    // The csv crate merges rows at broken quoting; refuse such files first.
    // Two passes over the (decompressed) stream: nothing is held whole.
    let (input, compression) = crate::input::open(path)?;
    match crate::quoting::check(input) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("{shown}:{}: {}", e.line(), e.describe()),
        Err(e) => return Err(crate::input::read_error(path, compression, &e)),
    }
    let (input, _) = crate::input::open(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let header = match reader.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => bail!("{shown}: {}", describe_csv_error(&e)),
    };
    let columns = Columns::find(&header, params, path)?;
    let labels = LabelParser::new(params)?;

    let mut kept = 0;
    let mut max_label = 0;
    let mut dropped_empty = 0;
    let mut record = csv::ByteRecord::new();
    let mut data_row: i64 = -1;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => bail!("{shown}: {}", describe_csv_error(&e)),
        }
        data_row += 1;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let text = field_text(&record[columns.text], path, line, &params.text_column)?;
        let label_text = field_text(&record[columns.label], path, line, &params.label_column)?;
        if text.trim().is_empty() {
            match params.empty_sentences {
                EmptySentences::Drop => {
                    dropped_empty += 1;
                    continue;
                }
                EmptySentences::Error => bail!(
                    "{shown}:{line}: empty sentence; fix the row, or set ingest.empty_sentences = \"drop\" to leave such rows out"
                ),
            }
        }
        let chars = text.chars().count();
        if chars > params.max_sentence_chars {
            bail!(
                "{shown}:{line}: sentence of {chars} characters (limit ingest.max_sentence_chars = {}, \
                 which bounds memory); shorten the text or raise the limit (BERT reads at most 512 tokens of it)",
                params.max_sentence_chars
            );
        }
        let label = labels
            .parse(label_text.trim())
            .map_err(|problem| anyhow::anyhow!("{shown}:{line}: {problem}"))?;
        let group = match (columns.group, &params.group_column) {
            (Some(col), Some(name)) => {
                let group = field_text(&record[col], path, line, name)?.trim();
                if group.is_empty() {
                    bail!(
                        "{shown}:{line}: empty group (column {name:?}, ingest.group_column); every row needs the group it belongs to"
                    );
                }
                Some(group)
            }
            _ => None,
        };
        max_label = max_label.max(label);
        kept += 1;
        each(RowRef {
            row_id: data_row,
            sentence: text,
            label,
            group,
        })?;
    }
    if data_row < 0 {
        bail!("{shown}: the file has a header but no data rows");
    }
    if kept == 0 {
        bail!(
            "{shown}: all {} data rows have empty sentences; nothing to train on",
            data_row + 1
        );
    }
    Ok(Scanned {
        classes: labels.class_names(max_label, path)?,
        dropped_empty,
    })
}

/// Where the columns the reader needs are in the header.
struct Columns {
    text: usize,
    label: usize,
    group: Option<usize>,
}

impl Columns {
    fn find(header: &csv::ByteRecord, params: &IngestParams, path: &Path) -> Result<Columns> {
        let shown = path.display();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            bail!(
                "{shown}: the file is empty; expected a header line `{},{}` and data rows",
                params.text_column,
                params.label_column
            );
        }
        let names: Vec<String> = header
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect();
        refuse_duplicate_columns(&names, path)?;
        let find = |wanted: &str, key: &str| -> Result<usize> {
            names.iter().position(|n| n == wanted).ok_or_else(|| {
                anyhow::anyhow!(
                    "{shown}:1: no column named {wanted:?} in the header (found: {}); rename the column or set ingest.{key}",
                    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                )
            })
        };
        Ok(Columns {
            text: find(&params.text_column, "text_column")?,
            label: find(&params.label_column, "label_column")?,
            group: match &params.group_column {
                Some(name) => Some(find(name, "group_column")?),
                None => None,
            },
        })
    }
}

/// Two header columns with one name make the column to read ambiguous
/// (pandas renames the second, Python's `DictReader` keeps the last).
fn refuse_duplicate_columns(names: &[String], path: &Path) -> Result<()> {
    let mut first_at: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        if let Some(first) = first_at.insert(name, i) {
            bail!(
                "{}:1: the header names column {name:?} twice (columns {} and {}); rename one of them",
                path.display(),
                first + 1,
                i + 1
            );
        }
    }
    Ok(())
}

fn field_text<'a>(bytes: &'a [u8], path: &Path, line: u64, column: &str) -> Result<&'a str> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => bail!(
            "{}:{line}: column {column:?} is not valid UTF-8 (bad byte at offset {} of the field); re-save the file as UTF-8",
            path.display(),
            e.valid_up_to()
        ),
    };
    if text.contains('\0') {
        bail!(
            "{}:{line}: column {column:?} contains a NUL byte; remove it (binary data is not text)",
            path.display()
        );
    }
    Ok(text)
}

fn describe_csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => format!(
            "line {}: {len} fields, but the header has {expected_len}; quote fields that contain commas",
            pos.as_ref().map(|p| p.line()).unwrap_or(0)
        ),
        csv::ErrorKind::Io(io) => format!("cannot read the file: {io}"),
        _ => format!("malformed CSV: {e}"),
    }
}

/// Turns label fields into class ids.
enum LabelParser {
    Integers { num_classes: Option<i64> },
    Mapped(BTreeMap<String, i64>),
}

impl LabelParser {
    fn new(params: &IngestParams) -> Result<LabelParser> {
        if params.labels.is_empty() {
            if let Some(k) = params.num_classes {
                if k < 2 {
                    bail!("ingest.num_classes = {k}; a classifier needs at least 2 classes");
                }
            }
            return Ok(LabelParser::Integers {
                num_classes: params.num_classes,
            });
        }
        let mut ids: Vec<i64> = params.labels.values().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let k = params.labels.len() as i64;
        if ids.len() != params.labels.len() || ids != (0..k).collect::<Vec<_>>() {
            bail!(
                "ingest.labels must map each label to a distinct class id 0..{} (got {:?})",
                k - 1,
                params.labels
            );
        }
        if k < 2 {
            bail!("ingest.labels maps only one label; a classifier needs at least 2 classes");
        }
        Ok(LabelParser::Mapped(params.labels.clone()))
    }

    fn parse(&self, text: &str) -> std::result::Result<i64, String> {
        match self {
            LabelParser::Integers { num_classes } => {
                let Ok(id) = text.parse::<i64>() else {
                    return Err(format!(
                        "label {text:?} is not a class id 0..K-1; for text labels, map them in [ingest.labels] (e.g. negative = 0)"
                    ));
                };
                if id < 0 || num_classes.is_some_and(|k| id >= k) {
                    let range = num_classes
                        .map(|k| format!("0..{}", k - 1))
                        .unwrap_or_else(|| "0..K-1".into());
                    return Err(format!(
                        "label {id} is outside the known classes {range}; fix the row or ingest.num_classes"
                    ));
                }
                Ok(id)
            }
            LabelParser::Mapped(map) => map.get(text).copied().ok_or_else(|| {
                format!(
                    "label {text:?} is not in [ingest.labels] (known: {}); add it or fix the row",
                    map.keys()
                        .map(|k| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        }
    }

    /// Class names by id; with integer labels also checks that every class
    /// 0..K-1 occurs.
    fn class_names(&self, max: i64, path: &Path) -> Result<Vec<String>> {
        match self {
            LabelParser::Mapped(map) => {
                let mut names = vec![String::new(); map.len()];
                for (name, &id) in map {
                    names[id as usize] = name.clone();
                }
                Ok(names)
            }
            LabelParser::Integers { num_classes } => {
                let k = num_classes.unwrap_or(max + 1);
                if k < 2 {
                    bail!(
                        "{}: every row has label {max}; a classifier needs at least 2 classes",
                        path.display()
                    );
                }
                Ok((0..k).map(|c| c.to_string()).collect())
            }
        }
    }
}
