//! `model_card.md`: what a reader of the exported folder needs to know
//! without the pipeline: where the data and the model came from, how the
//! data was split, every parameter, the test metrics, how to call the
//! graph, and the keys of the results it was built from.

use std::fmt::Write;

use crate::{ExportInputs, Parity};

/// Facts the stage adapter gathers for the card.
pub struct CardFacts<'a> {
    /// `stage.key` = value of every stage's parameters, the CSV path and
    /// the model source included.
    pub params: &'a [(String, String)],
    /// The report stage's classification report on the test split.
    pub classification_report: &'a str,
    /// (stage, key) of the results the export was built from, its own included.
    pub keys: Vec<(String, String)>,
}

pub fn render(
    facts: &CardFacts,
    inputs: &ExportInputs,
    shape: head::HeadShape,
    parity: &Parity,
) -> String {
    let p = |stage: &str, key: &str| -> String {
        let name = format!("{stage}.{key}");
        facts
            .params
            .iter()
            .find(|(k, _)| *k == name)
            .map_or_else(|| "?".into(), |(_, v)| v.clone())
    };
    let mut s = String::new();
    let _ = writeln!(s, "# Sentiment classifier\n");
    let _ = writeln!(
        s,
        "A frozen BERT encoder (`{}`, {} precision), {} pooling, and a trained MLP head \
         ({} → {} → {} classes), exported as one ONNX graph by bert-sentiment.\n",
        p("model", "source"),
        p("model", "precision"),
        p("embed", "pooling"),
        shape.input,
        shape.hidden,
        shape.classes
    );
    let _ = writeln!(s, "## Files\n");
    let _ = writeln!(
        s,
        "- `classifier.onnx`: inputs `input_ids`, `attention_mask` (int64 [batch, sequence]); \
         output `probabilities` (float32 [batch, {}], softmax over the classes).",
        inputs.classes.len()
    );
    let _ = writeln!(
        s,
        "- `tokenizer.json`: truncates to {} tokens ([CLS] and [SEP] included) and pads a batch \
         to its longest text; feed its `ids` and `attention_mask`.",
        inputs.max_len
    );
    let _ = writeln!(s, "- `labels.json`: class id → name.\n");
    let _ = writeln!(s, "## Classes\n");
    for (i, name) in inputs.classes.iter().enumerate() {
        let _ = writeln!(s, "- {i}: {name}");
    }
    let _ = writeln!(s, "\n## Data\n");
    let _ = writeln!(
        s,
        "Trained on `{}` (column `{}`, labels `{}`), split {}/{}/{} train/val/test, \
         stratified, seed {}.\n",
        p("ingest", "csv"),
        p("ingest", "text_column"),
        p("ingest", "label_column"),
        p("ingest", "train_fraction"),
        p("ingest", "val_fraction"),
        p("ingest", "test_fraction"),
        p("ingest", "seed")
    );
    let _ = writeln!(s, "## Test split\n");
    let _ = writeln!(
        s,
        "```text\n{}\n```\n",
        facts.classification_report.trim_end()
    );
    let _ = writeln!(
        s,
        "Checked at export: the test rows scored from this folder's files (tokenized from \
         their text): {}.\n",
        parity.summary()
    );
    if let Some(against_head) = &parity.against_head {
        let _ = writeln!(s, "{against_head}.\n");
    }
    let _ = writeln!(s, "## Parameters\n");
    let _ = writeln!(s, "| parameter | value |\n|---|---|");
    for (k, v) in facts.params {
        let _ = writeln!(s, "| `{k}` | `{v}` |");
    }
    let _ = writeln!(s, "\n## Built from\n");
    let _ = writeln!(s, "| result | key |\n|---|---|");
    for (stage, key) in &facts.keys {
        let _ = writeln!(s, "| {stage} | `{key}` |");
    }
    s
}
