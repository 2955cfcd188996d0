//! Adapters: each stage library behind the runner's [`Stage`] trait. This is
//! where a stage's parameters, inputs, outputs and code version are declared.

use anyhow::Result;
use runner::{Input, Pipeline, RunContext, Stage};
use serde_json::Value;
use tables::Provenance;

use crate::config::PipelineConfig;

pub fn build_pipeline(config: &PipelineConfig) -> Result<Pipeline> {
    Pipeline::new(vec![Box::new(IngestStage { params: config.ingest.clone() })])
}

/// Parameters as hashed: the typed config re-serialised (defaults filled
/// in), minus the keys that name input files (their content is hashed).
fn key_params<T: serde::Serialize>(params: &T, input_path_keys: &[&str]) -> Value {
    let mut value = serde_json::to_value(params).expect("parameters serialise");
    if let Value::Object(map) = &mut value {
        for key in input_path_keys {
            map.remove(*key);
        }
    }
    value
}

fn provenance(ctx: &RunContext) -> Provenance {
    Provenance::stage(ctx.key(), &runner::key::canonical_json(ctx.params()))
}

struct IngestStage {
    params: ingest::IngestParams,
}

impl Stage for IngestStage {
    fn name(&self) -> &str {
        "ingest"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        key_params(&self.params, &["csv"])
    }
    fn inputs(&self) -> Vec<Input> {
        vec![Input::file("csv", &self.params.csv)]
    }
    fn outputs(&self) -> Vec<String> {
        ingest::OUTPUTS.iter().map(|s| s.to_string()).collect()
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let summary = ingest::run(&self.params, ctx.input("csv"), ctx.out_dir(), provenance(ctx))?;
        for note in summary.notes {
            ctx.note(note);
        }
        Ok(())
    }
}
