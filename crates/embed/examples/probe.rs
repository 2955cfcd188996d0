//! Throughput probe: cargo run -p embed --example probe -- ENCODED.parquet MODEL.onnx N BATCH_TOKENS MAX_ROWS
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (rows, _) = tables::encoded::read(std::path::Path::new(&a[1]))?;
    let n: usize = a[3].parse()?;
    let rows = &rows[..n.min(rows.len())];
    let params = embed::EmbedParams {
        batch_tokens: Some(a[4].parse()?),
        max_batch_rows: Some(a[5].parse()?),
        ..Default::default()
    };
    let t = Instant::now();
    let (mut enc, _) = embed::Encoder::open(
        std::path::Path::new(&a[2]),
        embed::Pooling::Pooler,
        embed::Device::Cpu,
        2,
    )?;
    println!("session {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let bar = indicatif::ProgressBar::hidden();
    embed::local::embed_rows(&mut enc, rows, &params, &bar)?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "{} rows in {s:.2}s = {:.0} rows/s",
        rows.len(),
        rows.len() as f64 / s
    );
    Ok(())
}
