//! The bounded-memory invariant (ARCHITECTURE.md): the streaming stages'
//! peak resident memory grows with the row count by a small per-row index
//! at most, never by the rows' texts or features. Measured as the peak RSS
//! of the CLI process running one stage (`wait4`'s rusage), at 100,000 and
//! at 300,000 generated rows through the tiny model (H = 64); what counts
//! is the growth per added row, so the fixed cost of the process (ONNX
//! Runtime, the model) and the bounded buffers (windows, row groups: all
//! full at 100,000 rows) drop out.
//!
//! Measured when this test was written (2-core AMD EPYC): ingest 526 B a
//! row while it held the CSV's rows, 124 B streaming them through a scratch
//! file; embed 354 B a row while its writer read every chunk a batch's
//! repeated rows pointed back to (all of them, with SST-2's repeats), 143 B
//! gathering each split through a scratch file; head 46 B; `evaluate` and
//! `predict --csv` 7,554 and 7,291 B a row (2.3 GB at 300,000 rows) while
//! they tokenized, embedded and scored the whole file at once, 131 and 163
//! B scoring 16,384 sentences at a time; the audit 1,092 B a row with its
//! linear probe in memory (`audit.probe_in_memory_rows` above the rows),
//! 91 B on the streamed paths with few rows overlapping. Then, with every
//! held-out row overlapping (the default near-duplicate cosine on the
//! random model), old code and new back to back: the audit 358 -> 222 B
//! (the overlapping rows as indices, their sentences through scratch
//! files, the tables written a row group at a time), the report 280 -> 8 B
//! (the overlap table read a row group at a time), embed 171 -> 96 B (the
//! store's key index by a 16-byte key prefix, Fx-hashed). Then ingest, old
//! and new alone back to back: 89 -> 46 B (repeated texts found from their
//! hashes sorted on disk, not a hash table in memory).

mod common;

use std::process::{Command, Stdio};

use common::{Project, shared_data, tiny_model};

/// Peak resident bytes of `pipeline-cli ARGS --config <p>/pipeline.toml`.
fn peak_rss(p: &Project, args: &[&str]) -> u64 {
    let child = Command::new(env!("CARGO_BIN_EXE_pipeline-cli"))
        .args(args)
        .arg("--config")
        .arg(p.path("pipeline.toml"))
        .current_dir(p.path(""))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the pipeline CLI");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; pid is our unreaped child (its
    // `Child` handle is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{args:?} failed"
    );
    drop(child);
    usage.ru_maxrss as u64 * 1024
}

/// The audit on its streamed paths at these sizes: the approximate search
/// (exact below 0 rows: never) and the streamed probe. The random model's
/// features are all alike, so at the default near-duplicate cosine every
/// held-out row overlaps: the overlap table is as large as it can be, a
/// row and a sentence or two for each held-out row, for the audit to write
/// and the report to read.
const AUDIT: &str = "[audit]\nexact_search_rows = 0\nprobe_in_memory_rows = 0\n";

/// A project of `rows` rows, each two SST-2 sentences joined (a fixed
/// linear congruential draw), the first one's label.
fn project(rows: usize) -> Project {
    let mut reader = csv::Reader::from_path(shared_data("sst2_train.csv")).unwrap();
    let texts: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    let p = Project::empty();
    let mut writer = csv::Writer::from_path(p.path("data/input.csv")).unwrap();
    writer.write_record(["sentence", "label"]).unwrap();
    let mut state: u64 = 27;
    let mut draw = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize % texts.len()
    };
    for _ in 0..rows {
        let (a, label) = &texts[draw()];
        let (b, _) = &texts[draw()];
        writer
            .write_record([format!("{a} {b}").as_str(), label])
            .unwrap();
    }
    writer.flush().unwrap();
    // A window far below the row count: what the embed stage holds of the
    // encoded rows is then the window, whatever the size.
    p.write_config(&format!(
        "[ingest]\ncsv = \"data/input.csv\"\n[embed]\ndevice = \"cpu\"\nwindow_rows = 8192\n\
         [head]\nepochs = 1\n{AUDIT}{}",
        tiny_model()
    ));
    p
}

#[test]
fn stages_evaluate_and_predict_grow_by_a_small_index_per_row_not_by_the_rows() {
    let sizes = [100_000usize, 300_000];
    let (mut ingest, mut embed, mut head) = (Vec::new(), Vec::new(), Vec::new());
    let (mut evaluate, mut predict, mut audit) = (Vec::new(), Vec::new(), Vec::new());
    let mut report = Vec::new();
    for rows in sizes {
        let p = project(rows);
        ingest.push(peak_rss(&p, &["run-pipeline", "--until", "ingest"]));
        let upstream = p.cli(&["run-pipeline", "--until", "encode"]);
        assert_eq!(upstream.code, 0, "{}", upstream.stderr);
        embed.push(peak_rss(&p, &["run-pipeline", "--until", "embed"]));
        head.push(peak_rss(&p, &["run-pipeline", "--until", "head"]));
        audit.push(peak_rss(&p, &["run-pipeline", "--until", "audit"]));
        report.push(peak_rss(&p, &["run-pipeline", "--until", "report"]));
        // Every row is in the feature store by now: what is measured is
        // the reading, tokenizing and scoring, a window at a time.
        evaluate.push(peak_rss(&p, &["evaluate", "--csv", "data/input.csv"]));
        predict.push(peak_rss(&p, &["predict", "--csv", "data/input.csv"]));
    }
    let added = (sizes[1] - sizes[0]) as f64;
    let per_row = |peaks: &[u64]| (peaks[1] as f64 - peaks[0] as f64) / added;
    let (ingest_per_row, embed_per_row, head_per_row) =
        (per_row(&ingest), per_row(&embed), per_row(&head));
    let (evaluate_per_row, predict_per_row) = (per_row(&evaluate), per_row(&predict));
    let (audit_per_row, report_per_row) = (per_row(&audit), per_row(&report));
    eprintln!(
        "peak RSS: ingest {ingest:?} ({ingest_per_row:.0} B a row), embed {embed:?} \
         ({embed_per_row:.0} B a row), head {head:?} ({head_per_row:.0} B a row), \
         evaluate {evaluate:?} ({evaluate_per_row:.0} B a row), predict {predict:?} \
         ({predict_per_row:.0} B a row), audit {audit:?} ({audit_per_row:.0} B a row), \
         report {report:?} ({report_per_row:.0} B a row)"
    );
    // ingest: row id, label and text place (28 B a row), a bit a row for
    // repeats (the texts' hashes sorted on disk) and the split's positions;
    // measured 46 B, and 89 B (ingest alone, back to back) while the repeat
    // index was a hash table in memory; a row's text alone is ~100 B here.
    assert!(
        ingest_per_row < 70.0,
        "ingest grows by {ingest_per_row:.0} B a row ({ingest:?})"
    );
    // embed: the feature store's key index (a 16-byte key prefix and its
    // location, 24 B a distinct row in a sorted array; ~50 B in a hash
    // table) and a split's locations, 12 B a row; measured 96 B with the
    // hash table, and 143-174 B while it held whole keys under SipHash
    // (~93 B a row); a row's vector alone is 256 B (H = 64).
    assert!(
        embed_per_row < 150.0,
        "embed grows by {embed_per_row:.0} B a row ({embed:?})"
    );
    // head: labels, the permutation, the val/test row ids and test
    // probabilities (≤ 40 B a row); measured 26 to 93 B from run to run
    // (the allocator's slack), where a row's vector alone is 256 B.
    assert!(
        head_per_row < 150.0,
        "head grows by {head_per_row:.0} B a row ({head:?})"
    );
    // evaluate and predict --csv: the store's key index, and for evaluate
    // a label and a prediction (16 B) a row.
    assert!(
        evaluate_per_row < 250.0,
        "evaluate grows by {evaluate_per_row:.0} B a row ({evaluate:?})"
    );
    assert!(
        predict_per_row < 250.0,
        "predict --csv grows by {predict_per_row:.0} B a row ({predict:?})"
    );
    // audit: the splits' row ids and labels (16 B a row), the out-of-fold
    // probabilities (16 B), the text overlap's hashes (~50 B a distinct
    // training text), the search's cluster of each earlier row (4 B), the
    // overlapping rows as indices (16 B a held-out row) and the sentence
    // scratch files' offsets (12 B). Two bounded buffers still fill between
    // these sizes: the k-means sample (at most 131,072 rows: every other
    // row at 300,000, ~45 B an added row at H = 64) and the search's batch
    // of held-out rows (at most 128 MB: a split's 256 B vectors and 16
    // probe pairs of 8 B each, ~60 B an added row). Measured 222 B; 358 B
    // while the overlapping rows and their sentences were held as strings
    // and written in one batch. A row's vector alone is 256 B, its text
    // ~100 B, and the in-memory probe's f64 fold matrices 512 B.
    assert!(
        audit_per_row < 300.0,
        "audit grows by {audit_per_row:.0} B a row ({audit:?})"
    );
    // report: the test predictions (24 B a test row) and the ids of the
    // test rows that overlap training (8 B), not the overlap table's rows:
    // measured 8 B, and 280 B while it read the table whole.
    assert!(
        report_per_row < 60.0,
        "report grows by {report_per_row:.0} B a row ({report:?})"
    );
}
