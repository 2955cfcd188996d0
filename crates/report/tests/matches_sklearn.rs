//! classification_report against scikit-learn itself, byte for byte:
//! binary, 3-class, a class with no predictions, a class with no support,
//! long class names, several digit counts.

use std::process::Command;

fn sklearn_report(labels: &[i64], preds: &[i64], names: &[String], digits: usize) -> String {
    let python = std::env::var("PIPELINE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import json,sys,warnings\nwarnings.simplefilter('ignore')\nfrom sklearn.metrics import classification_report\n\
                  a=json.loads(sys.argv[1])\n\
                  sys.stdout.write(classification_report(a['y'],a['p'],labels=list(range(len(a['n']))),target_names=a['n'],digits=a['d']))";
    let arg = serde_json::json!({"y": labels, "p": preds, "n": names, "d": digits}).to_string();
    let out = Command::new(python)
        .args(["-c", script, &arg])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "scikit-learn failed (run via `cargo xtask test`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deterministic pseudo-random labels (no RNG crate needed).
fn lcg(seed: u64, n: usize, k: i64) -> Vec<i64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % k as u64) as i64
        })
        .collect()
}

#[test]
fn reports_equal_sklearn_byte_for_byte() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut cases: Vec<(Vec<i64>, Vec<i64>, Vec<String>, usize)> = vec![
        (lcg(1, 300, 2), lcg(2, 300, 2), names(&["0", "1"]), 2),
        (
            lcg(3, 1000, 3),
            lcg(4, 1000, 3),
            names(&["negative", "neutral", "positive"]),
            2,
        ),
        // Class 2 is never predicted; class 1 never occurs.
        (
            vec![0, 0, 2, 2, 2, 0, 0],
            vec![0, 1, 0, 0, 1, 0, 1],
            names(&["a", "b", "c"]),
            2,
        ),
        (
            lcg(5, 77, 4),
            lcg(6, 77, 4),
            names(&["a rather long class name", "b", "c", "d"]),
            3,
        ),
        (
            lcg(7, 10103, 2),
            lcg(8, 10103, 2)
                .iter()
                .zip(lcg(7, 10103, 2))
                .map(|(r, t)| if *r == 0 { t } else { 1 - t })
                .collect(),
            names(&["0", "1"]),
            4,
        ),
    ];
    // Perfect and all-wrong predictions.
    cases.push((
        vec![0, 1, 1, 0],
        vec![0, 1, 1, 0],
        names(&["neg", "pos"]),
        2,
    ));
    cases.push((
        vec![0, 1, 1, 0],
        vec![1, 0, 0, 1],
        names(&["neg", "pos"]),
        2,
    ));
    for (i, (y, p, n, d)) in cases.iter().enumerate() {
        let ours = report::classification_report(&report::metrics(y, p, n), *d);
        let theirs = sklearn_report(y, p, n, *d);
        assert_eq!(ours, theirs, "case {i}:\nours:\n{ours}\nsklearn:\n{theirs}");
    }
}
