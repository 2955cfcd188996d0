//! A CPU session over any graph that takes `input_ids` and `attention_mask`
//! (int64 [batch, sequence]) and gives one float32 output: how the exported
//! classifier (`export::folder`) runs without a crate other than this one
//! depending on `ort`.

use std::path::Path;

use anyhow::{Result, bail};
use ort::session::Session;
use ort::value::Tensor;

use crate::ortlib;

pub struct MaskedGraph {
    session: Session,
    output: String,
}

impl MaskedGraph {
    /// Opens `model` with `threads` intra-op threads; `output` must exist.
    pub fn open(model: &Path, output: &str, threads: usize) -> Result<MaskedGraph> {
        let env = ortlib::environment(false)?;
        let session = crate::encoder::build_session(env, model, threads, None)?;
        if !session.outputs().iter().any(|o| o.name() == output) {
            bail!("{}: the graph has no {output} output", model.display());
        }
        Ok(MaskedGraph {
            session,
            output: output.to_string(),
        })
    }

    /// The output for one padded batch (`ids`, `mask` row-major [rows × seq]).
    pub fn run(
        &mut self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        rows: usize,
        seq: usize,
    ) -> Result<Vec<f32>> {
        let inputs = ort::inputs![
            "input_ids" => Tensor::from_array(([rows, seq], ids))?,
            "attention_mask" => Tensor::from_array(([rows, seq], mask))?,
        ];
        let outputs = self.session.run(inputs)?;
        Ok(outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()?
            .1
            .to_vec())
    }
}
