//! The export stage on the tiny random BERT: a folder whose head made the
//! test predictions passes its parity check; the same export with the head
//! changed after the predictions were made (a corrupted exported head) fails,
//! naming the rows, and the stage writes nothing it would keep.

use std::path::{Path, PathBuf};

use export::{CardFacts, ExportInputs, Pool};
use tables::Provenance;
use tables::splits::LabelledRow;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/bert-tiny-random")
}

struct Fixture {
    dir: tempfile::TempDir,
    precision: model::Precision,
    classes: Vec<String>,
    model: PathBuf,
    tokenizer: PathBuf,
    head: PathBuf,
    test_split: PathBuf,
    test_predictions: PathBuf,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Upstream results as the pipeline would have them: the converted
    /// graph, a head, a test split, and (`predictions_from` the head file)
    /// the head stage's test predictions.
    fn new(precision: model::Precision) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (graph, info) = model::convert_with(
            &tiny().join("config.json"),
            &tiny().join("model.safetensors"),
            model::Ops::Fused,
            precision,
        )
        .unwrap();
        std::fs::write(dir.path().join("model.onnx"), graph).unwrap();
        std::fs::copy(
            tiny().join("tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        let sentences = [
            "a gripping, beautifully shot film",
            "dull",
            "the plot never comes together and the acting is wooden",
            "I would watch it again tomorrow",
            "not worth the ticket",
            "an utterly charming surprise from start to finish, with a score that lingers",
        ];
        let rows: Vec<LabelledRow> = sentences
            .iter()
            .enumerate()
            .map(|(i, s)| LabelledRow {
                row_id: 10 + i as i64,
                sentence: s.to_string(),
                label: (i % 2) as i64,
            })
            .collect();
        let classes = vec!["negative".to_string(), "positive".to_string()];
        tables::splits::write(
            &dir.path().join("test.parquet"),
            &rows,
            &Provenance::stage("ingest-key", "{}")
                .with("classes", serde_json::to_string(&classes).unwrap()),
        )
        .unwrap();
        let device = head::Device::flex();
        device.seed(3);
        let shape = head::HeadShape {
            input: info.hidden_size,
            hidden: 8,
            classes: 2,
        };
        head::Head::new(shape, 0.0, &device)
            .save(&dir.path().join("head.safetensors"), shape)
            .unwrap();
        let path = |name: &str| dir.path().join(name);
        Fixture {
            model: path("model.onnx"),
            tokenizer: path("tokenizer.json"),
            head: path("head.safetensors"),
            test_split: path("test.parquet"),
            test_predictions: path("test_predictions.parquet"),
            dir,
            precision,
            classes,
        }
    }

    fn inputs<'a>(&'a self, params: &'a [(String, String)]) -> ExportInputs<'a> {
        ExportInputs {
            model: &self.model,
            tokenizer: &self.tokenizer,
            max_len: 8,
            pool: Pool::Mean,
            precision: self.precision,
            head: &self.head,
            classes: &self.classes,
            test_split: &self.test_split,
            test_predictions: &self.test_predictions,
            parity_rows: export::PARITY_ROWS,
            card: CardFacts {
                params,
                classification_report: "(report)",
                keys: vec![("export".into(), "k".into())],
            },
        }
    }

    /// The head stage's predictions, made here the head stage's way: the
    /// embed stage's features (embed::Encoder, mean pooling over tokens cut
    /// to max_len 8) through the burn head.
    fn predict_with_head(&self) {
        let rows = tables::splits::read(&self.path("test.parquet")).unwrap();
        let tokenizer = encode::SentenceTokenizer::load(&self.path("tokenizer.json")).unwrap();
        let texts: Vec<String> = rows.iter().map(|r| r.sentence.clone()).collect();
        let full = tokenizer.tokenize(&texts).unwrap();
        let tokens = tokenizer.truncate(&texts, full, 8).unwrap();
        let (mut encoder, _) = embed::Encoder::open(
            &self.path("model.onnx"),
            embed::Pooling::Mean,
            embed::Device::Cpu,
            1,
        )
        .unwrap();
        let mut features = Vec::new();
        for t in &tokens {
            let ids: Vec<i64> = t.ids.iter().map(|&i| i as i64).collect();
            let n = ids.len();
            features.extend(encoder.embed(ids, vec![1; n], 1, n).unwrap());
        }
        let device = head::Device::flex();
        let (head, shape) = head::Head::load(&self.path("head.safetensors"), &device).unwrap();
        let probabilities = head
            .probabilities(features, rows.len(), shape.input, &device)
            .unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.row_id).collect();
        let labels: Vec<i64> = rows.iter().map(|r| r.label).collect();
        tables::training::write_predictions(
            &self.path("test_predictions.parquet"),
            &ids,
            &labels,
            &probabilities,
            2,
            &Provenance::stage("head-key", "{}"),
        )
        .unwrap();
    }
}

#[test]
fn the_exported_folder_reproduces_the_head_and_a_changed_head_fails() {
    let f = Fixture::new(model::Precision::Fp32);
    f.predict_with_head();
    let params = vec![("model.source".to_string(), "dir:tiny".to_string())];
    let out = tempfile::tempdir().unwrap();
    let notes = export::run(&f.inputs(&params), out.path()).unwrap();
    assert!(notes[0].contains("every class equal"), "{notes:?}");
    for name in export::OUTPUTS {
        assert!(out.path().join(name).is_file(), "{name} missing");
    }
    let labels: export::Labels =
        serde_json::from_slice(&std::fs::read(out.path().join(export::LABELS)).unwrap()).unwrap();
    assert_eq!(labels.into_names().unwrap(), f.classes);

    // The exported folder alone scores the split as the head did.
    let mut classifier = export::Classifier::open(out.path(), 1).unwrap();
    let texts: Vec<String> = tables::splits::read(&f.path("test.parquet"))
        .unwrap()
        .into_iter()
        .map(|r| r.sentence)
        .collect();
    let ours = classifier.score(&texts).unwrap();
    let head = tables::training::read_prediction_rows(&f.path("test_predictions.parquet")).unwrap();
    for (a, b) in ours.iter().zip(&head.probabilities) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // The truncation is inside the exported tokenizer: the longest text is cut to 8.
    let ids = classifier.tokenize(&texts).unwrap();
    assert_eq!(ids.iter().map(Vec::len).max(), Some(8));

    // Corrupt the head after it made the predictions: flip fc2's bias so
    // that every row's class changes.
    let device = head::Device::flex();
    let (_, shape) = head::Head::load(&f.path("head.safetensors"), &device).unwrap();
    let mut weights = head::HeadWeights::read(&f.path("head.safetensors")).unwrap();
    weights.fc2_bias = vec![1e3, -1e3];
    weights.fc2_weight.iter_mut().for_each(|w| *w = 0.0);
    write_head(&f.path("head.safetensors"), &weights, shape);
    let out = tempfile::tempdir().unwrap();
    let err = export::run(&f.inputs(&params), out.path()).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("does not reproduce the head") && message.contains("data row 10 "),
        "{message}"
    );
    assert!(
        !out.path().join(export::CARD).exists(),
        "no model card after a failed check"
    );
}

/// An int8 graph quantizes activations per row, so features do not depend
/// on batching: its export reproduces the head stage's predictions, made
/// with each row embedded alone, within the fp32 bound.
#[test]
fn an_int8_export_reproduces_the_head_made_in_other_batches() {
    let f = Fixture::new(model::Precision::Int8);
    // The head stage's predictions, each row embedded alone (other batches).
    f.predict_with_head();
    let out = tempfile::tempdir().unwrap();
    let notes = export::run(&f.inputs(&[]), out.path()).unwrap();
    assert!(
        notes[0].contains("with the head stage's predictions")
            && notes[0].contains("every class equal"),
        "{notes:?}"
    );
    assert_eq!(notes.len(), 1, "no gap to report: {notes:?}");
}

/// fp16 sums depend on a batch's padded length, so an fp16 export is
/// checked against the graph and head recomputed in the batches the export
/// is scored in; how far it is from the head stage is reported.
#[test]
fn an_fp16_export_is_checked_in_its_own_batches_and_reports_the_head_gap() {
    let f = Fixture::new(model::Precision::Fp16);
    f.predict_with_head();
    let out = tempfile::tempdir().unwrap();
    let notes = export::run(&f.inputs(&[]), out.path()).unwrap();
    assert!(
        notes[0].contains("recomputed in the same batches")
            && notes[0].contains("every class equal"),
        "{notes:?}"
    );
    assert!(
        notes[1].contains("Fp16 sums depend on the padded length"),
        "{notes:?}"
    );
    let card = std::fs::read_to_string(out.path().join(export::CARD)).unwrap();
    assert!(card.contains("Fp16 sums depend"), "{card}");
}

/// A head file in [`head::Head::save`]'s layout from plain weights.
fn write_head(path: &Path, w: &head::HeadWeights, shape: head::HeadShape) {
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let tensors = [
        (
            "fc1.weight",
            vec![shape.input, shape.hidden],
            bytes(&w.fc1_weight),
        ),
        ("fc1.bias", vec![shape.hidden], bytes(&w.fc1_bias)),
        (
            "fc2.weight",
            vec![shape.hidden, shape.classes],
            bytes(&w.fc2_weight),
        ),
        ("fc2.bias", vec![shape.classes], bytes(&w.fc2_bias)),
    ];
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, dims, data)| {
            (
                name.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims.clone(), data)
                    .unwrap(),
            )
        })
        .collect();
    let metadata = std::collections::HashMap::from([(
        "shape".to_string(),
        serde_json::to_string(&shape).unwrap(),
    )]);
    safetensors::serialize_to_file(views, Some(metadata), path).unwrap();
}

/// `export.parity_rows` below the test split's size: the check scores a
/// stratified sample of that many rows, says so, and still fails on a
/// changed head.
#[test]
fn the_parity_check_scores_a_sample_when_asked_for_fewer_rows() {
    let f = Fixture::new(model::Precision::Fp32);
    f.predict_with_head();
    let test_rows = tables::splits::read(&f.path("test.parquet")).unwrap().len();
    assert!(test_rows > 3);
    let inputs = ExportInputs {
        parity_rows: 3,
        ..f.inputs(&[])
    };
    let out = tempfile::tempdir().unwrap();
    let notes = export::run(&inputs, out.path()).unwrap();
    assert!(
        notes[0].contains(&format!(
            "a stratified sample of 3 of the {test_rows} test rows"
        )),
        "{notes:?}"
    );
    let card = std::fs::read_to_string(out.path().join(export::CARD)).unwrap();
    assert!(card.contains("a stratified sample of 3"), "{card}");

    let device = head::Device::flex();
    let (_, shape) = head::Head::load(&f.path("head.safetensors"), &device).unwrap();
    let mut weights = head::HeadWeights::read(&f.path("head.safetensors")).unwrap();
    weights.fc2_bias = vec![1e3, -1e3];
    weights.fc2_weight.iter_mut().for_each(|w| *w = 0.0);
    write_head(&f.path("head.safetensors"), &weights, shape);
    let err = export::run(&inputs, tempfile::tempdir().unwrap().path()).unwrap_err();
    assert!(format!("{err:#}").contains("test rows"), "{err:#}");
}
