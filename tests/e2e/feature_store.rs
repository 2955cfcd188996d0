//! The embed stage's feature store: a rerun embeds only rows it has never
//! seen (another split seed, an appended row, a repeated sentence), a kill
//! inside embed loses at most the chunk in flight, a damaged chunk is
//! dropped and its rows embedded again, and in every case the features
//! equal a clean run's within the batching tolerance (`compare-features`).

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Project, Run, committed_chunks, largest_difference, run_and_kill, shared_data};

/// The "R rows: N embedded now (D distinct inputs), S from the feature
/// store" note of embed, as (R, N, D, S).
fn embed_counts(run: &Run) -> (usize, usize, usize, usize) {
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("from the feature store"))
        .unwrap_or_else(|| panic!("no feature-store note in:\n{}", run.stdout));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2], numbers[3])
}

/// A project on `csv_text` with the tiny model on the CPU.
fn project(csv_text: &str) -> Project {
    let p = Project::empty();
    p.write_csv(csv_text.as_bytes());
    p.write_config(&format!(
        "[ingest]\ncsv = \"data/input.csv\"\n[embed]\ndevice = \"cpu\"\n{}",
        common::tiny_model()
    ));
    p
}

fn uci() -> String {
    fs::read_to_string(shared_data("uci_amazon_yelp.csv")).unwrap()
}

#[test]
fn a_seed_change_an_appended_row_and_a_repeat_embed_only_what_is_new() {
    let p = project(&uci());
    let first = p.cli(&["run-pipeline"]);
    assert_eq!(
        embed_counts(first.ok()),
        (2000, 2000, 1983, 0),
        "UCI repeats 17 sentences"
    );

    let reseeded = p.cli(&["run-pipeline", "--set", "ingest.seed=7"]);
    assert_eq!(reseeded.ok().outcome("embed"), "ran");
    assert_eq!(embed_counts(&reseeded), (2000, 0, 0, 2000));
    let clean = project(&uci());
    clean.cli(&["run-pipeline", "--set", "ingest.seed=7"]).ok();
    let apart = largest_difference(&p, &clean);
    assert!(apart <= 1e-5, "store against clean run: {apart:e}");

    // Two new rows with the same text: one model input, embedded once.
    let appended = format!(
        "{}a sentence no review ever had,1\na sentence no review ever had,1\n",
        uci()
    );
    p.write_csv(appended.as_bytes());
    let grown = p.cli(&["run-pipeline"]);
    assert_eq!(embed_counts(grown.ok()), (2002, 2, 1, 2000));
    let clean = project(&appended);
    clean.cli(&["run-pipeline"]).ok();
    let apart = largest_difference(&p, &clean);
    assert!(apart <= 1e-5, "store against clean run: {apart:e}");
}

#[test]
fn a_damaged_chunk_is_dropped_and_its_rows_embedded_again() {
    let p = project(&uci());
    p.cli(&["run-pipeline"]).ok();
    // The chunks are the three embed outputs; the training split's is the
    // one damaged (in place: the output, the same file, is damaged too).
    let train = split_chunk(&p, "train");
    let chunks = committed_chunks(&p);
    assert_eq!(chunks, 3, "one chunk per split");
    let mut bytes = fs::read(&train).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&train, &bytes).unwrap();

    let run = p.cli(&["run-pipeline", "--force", "embed"]);
    assert!(
        run.ok().stdout.contains("feature store: dropped") && run.stdout.contains("embedded again"),
        "{}",
        run.stdout
    );
    let (rows, embedded, _, from_store) = embed_counts(&run);
    assert_eq!((rows, embedded + from_store), (2000, 2000));
    assert!(
        (1300..=1400).contains(&embedded),
        "the training rows the other splits do not hold: {}",
        run.stdout
    );
    // The rows, embedded again in the same batches, make the same output
    // again: same bytes, same name, intact.
    assert_ne!(fs::read(&train).unwrap(), bytes);
    assert_eq!(split_chunk(&p, "train"), train);
    assert_eq!(committed_chunks(&p), 3);
    // Recomputed in the same batches: equal to the first run, bit for bit.
    assert_eq!(
        run.outcome("head"),
        "cached",
        "early cutoff: the recomputed features are the same bytes\n{}",
        run.stdout
    );
}

/// The chunk of the store that is the embed output for `split` (the same
/// file: one inode, two names); panics if there is none.
fn split_chunk(p: &Project, split: &str) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    let output = fs::metadata(p.path(&format!("artifacts/embed/{split}.parquet"))).unwrap();
    fs::read_dir(p.path("artifacts/.cache/embed/chunks"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|c| {
            let m = fs::metadata(c).unwrap();
            (m.dev(), m.ino()) == (output.dev(), output.ino())
        })
        .unwrap_or_else(|| panic!("embed/{split}.parquet is no chunk of the store"))
}

fn embed_running(p: &Path) -> bool {
    fs::read_dir(p.join("artifacts/.tmp"))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("embed-"))
        })
        .unwrap_or(false)
}

#[test]
fn a_kill_inside_embed_loses_at_most_the_chunk_in_flight() {
    // Enough rows for several chunks (4096 rows each).
    let text: String = fs::read_to_string(shared_data("sst2_train.csv"))
        .unwrap()
        .lines()
        .take(15_001)
        .map(|l| format!("{l}\n"))
        .collect();
    let clean = project(&text);
    clean.cli(&["run-pipeline", "--until", "encode"]).ok();
    let started = Instant::now();
    let full = clean.cli(&["run-pipeline", "--until", "embed"]);
    let span = started.elapsed().as_secs_f64();
    let (rows, new, _, _) = embed_counts(full.ok());
    assert_eq!(rows, new);

    let p = project(&text);
    p.cli(&["run-pipeline", "--until", "encode"]).ok();
    // Kill later and later until a kill lands inside embed after at least
    // one chunk was committed.
    let mut landed = false;
    for step in 1..=40 {
        let delay = Duration::from_secs_f64(span * (0.3 + 0.02 * step as f64));
        let killed = run_and_kill(&p, &["run-pipeline", "--until", "embed"], delay);
        if killed && embed_running(p.dir.path()) && committed_chunks(&p) > 0 {
            landed = true;
            break;
        }
        // Start over: the store of a missed attempt would make the next
        // one trivially fast.
        let _ = fs::remove_dir_all(p.path("artifacts/.cache/embed"));
    }
    assert!(landed, "no kill landed inside embed after a chunk commit");
    let rerun = p.cli(&["run-pipeline", "--until", "embed"]);
    let (rows_again, new_again, _, stored) = embed_counts(rerun.ok());
    assert_eq!(rows_again, rows);
    assert!(
        stored >= 4096 && new_again < new,
        "the rerun reused what the killed run committed: {new_again} new, {stored} stored"
    );
    let apart = largest_difference(&p, &clean);
    assert!(apart <= 1e-5, "after a kill against clean run: {apart:e}");
}

#[test]
fn scoring_the_same_sentences_twice_embeds_them_once() {
    let p = project(&uci());
    p.cli(&["run-pipeline"]).ok();
    fs::write(
        p.path("data/held.csv"),
        "sentence,label\nnothing here was ever said,0\na review from nowhere,1\nyet another one,1\n",
    )
    .unwrap();
    let first = p.cli(&["evaluate", "--csv", "data/held.csv"]);
    assert!(
        first
            .ok()
            .stderr
            .contains("3 rows: 3 embedded now (3 distinct inputs), 0 from the feature store"),
        "{}",
        first.stderr
    );
    let again = p.cli(&["evaluate", "--csv", "data/held.csv"]);
    assert!(
        again
            .ok()
            .stderr
            .contains("3 rows: 0 embedded now (0 distinct inputs), 3 from the feature store"),
        "{}",
        again.stderr
    );
    assert_eq!(first.stdout, again.stdout, "the same figures");
    // predict goes through the same store: a sentence it holds adds
    // nothing, a new one adds a chunk.
    let chunks = || committed_chunks(&p);
    let before = chunks();
    p.cli(&["predict", "--text", "a review from nowhere"]).ok();
    assert_eq!(chunks(), before);
    p.cli(&["predict", "--text", "a sentence predict alone has seen"])
        .ok();
    assert_eq!(chunks(), before + 1);
}

#[test]
fn gc_keeps_the_vectors_the_current_result_uses_and_removes_the_rest() {
    let p = project(&uci());
    p.cli(&["run-pipeline", "--until", "embed"]).ok();
    // Truncation to 8 tokens: new inputs for every longer row.
    let short = p.cli(&[
        "run-pipeline",
        "--until",
        "embed",
        "--set",
        "encode.max_len=8",
    ]);
    let (_, _, truncated, _) = embed_counts(short.ok());
    assert!(truncated > 100, "{}", short.stdout);
    p.cli(&["run-pipeline", "--until", "embed"]).ok(); // the defaults current again

    // The store holds the two runs' outputs; the shorter one's rows go, the
    // current outputs stay whole (repeated rows and all: they are files of
    // the embed result too).
    let would = p.cli(&["gc", "--dry-run"]);
    assert!(
        would.ok().stdout.contains("feature store: 2000 vectors (")
            && would.stdout.contains("would be removed, 2000 kept"),
        "{}",
        would.stdout
    );
    let done = p.cli(&["gc"]);
    assert!(
        done.ok().stdout.contains("feature store: 2000 vectors (")
            && done.stdout.contains("removed, 2000 kept"),
        "{}",
        done.stdout
    );
    assert_eq!(committed_chunks(&p), 3);
    for split in ["train", "val", "test"] {
        split_chunk(&p, split);
    }
    // What the current result uses is still there; what gc removed is
    // embedded again when asked for.
    let again = p.cli(&["run-pipeline", "--until", "embed", "--force", "embed"]);
    assert_eq!(embed_counts(again.ok()), (2000, 0, 0, 2000));
    let short = p.cli(&[
        "run-pipeline",
        "--until",
        "embed",
        "--set",
        "encode.max_len=8",
    ]);
    assert_eq!(embed_counts(short.ok()).2, truncated);
}

#[test]
fn status_says_how_many_rows_a_rerun_would_embed() {
    let p = project(&uci());
    p.cli(&["run-pipeline", "--until", "embed"]).ok();
    let status = p.cli(&["status", "--set", "embed.pooling=\"mean\""]);
    assert!(
        status
            .ok()
            .stdout
            .lines()
            .any(|l| l.starts_with("embed ") && l.ends_with("; 2000 of 2000 rows new")),
        "{}",
        status.stdout
    );
    // A dry run reads the store and writes nothing to it.
    p.cli(&[
        "run-pipeline",
        "--until",
        "embed",
        "--set",
        "embed.pooling=\"mean\"",
    ])
    .ok();
    let chunks = committed_chunks(&p);
    let status = p.cli(&[
        "status",
        "--set",
        "embed.batch_tokens=64",
        "--set",
        "head.epochs=2",
    ]);
    assert!(
        status.ok().stdout.contains("embed    would restore"),
        "{}",
        status.stdout
    );
    assert_eq!(committed_chunks(&p), chunks, "status writes nothing");
}

/// The features are on disk once: each embed output is a chunk of the
/// store (one file, two names), and a chunk is ordinary Parquet that
/// pyarrow reads, keys and vectors.
#[test]
fn pyarrow_reads_a_chunk() {
    let p = project(&uci());
    p.cli(&["run-pipeline", "--until", "embed"]).ok();
    let chunk = split_chunk(&p, "train");
    for split in ["val", "test"] {
        split_chunk(&p, split);
    }
    let script = "import sys, pyarrow.parquet as pq\n\
        c = pq.read_table(sys.argv[1]); e = pq.read_table(sys.argv[2])\n\
        assert str(c.schema.field('key').type) == 'fixed_size_binary[32]', c.schema\n\
        keys = c.column('key').to_pylist(); assert all(len(k) == 32 for k in keys)\n\
        assert len(set(keys)) < len(keys), 'repeated sentences, repeated keys'\n\
        same = c.column('features').to_pylist() == e.column('features').to_pylist()\n\
        print(c.num_rows, int(same))";
    let out = common::run_python(&[
        "-c",
        script,
        chunk.to_str().unwrap(),
        p.path("artifacts/embed/train.parquet").to_str().unwrap(),
    ]);
    let counts: Vec<usize> = out.split_whitespace().map(|w| w.parse().unwrap()).collect();
    assert_eq!(
        counts,
        [1400, 1],
        "one vector per training row, the output's"
    );
}

/// `predict` writes to the store, so it takes the run lock: it waits for a
/// run in progress instead of writing beside it.
#[test]
fn predict_waits_for_a_run_in_progress() {
    let p = project(&uci());
    p.cli(&["run-pipeline"]).ok();
    let holder = fs::OpenOptions::new()
        .write(true)
        .open(p.path("artifacts/.lock"))
        .unwrap();
    holder.lock().unwrap();
    let mut predict = common::Background::start(&p, &["predict", "--text", "held back"]);
    predict.wait_for_stderr("waiting: another pipeline run");
    let chunks = committed_chunks(&p);
    holder.unlock().unwrap();
    let out = predict.finish();
    out.ok();
    assert!(out.stdout.contains("held back"));
    assert_eq!(committed_chunks(&p), chunks + 1);
}
