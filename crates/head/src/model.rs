//! The MLP and its weights file.

use std::path::Path;

use anyhow::{Context, Result};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeadShape {
    pub input: usize,
    pub hidden: usize,
    pub classes: usize,
}

#[derive(Module, Debug)]
pub struct Head {
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
}

impl Head {
    pub fn new(shape: HeadShape, dropout: f64, device: &Device) -> Head {
        Head {
            fc1: LinearConfig::new(shape.input, shape.hidden).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            fc2: LinearConfig::new(shape.hidden, shape.classes).init(device),
        }
    }

    /// Log-probabilities [batch, classes].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.dropout.forward(relu(self.fc1.forward(x)));
        log_softmax(self.fc2.forward(h), 1)
    }

    /// Writes the four tensors as safetensors (`fc1.weight` is [in, out]).
    pub fn save(&self, path: &Path, shape: HeadShape) -> Result<()> {
        let tensors = [
            (
                "fc1.weight",
                self.fc1.weight.val().into_data(),
                vec![shape.input, shape.hidden],
            ),
            (
                "fc1.bias",
                self.fc1
                    .bias
                    .as_ref()
                    .context("fc1 has no bias")?
                    .val()
                    .into_data(),
                vec![shape.hidden],
            ),
            (
                "fc2.weight",
                self.fc2.weight.val().into_data(),
                vec![shape.hidden, shape.classes],
            ),
            (
                "fc2.bias",
                self.fc2
                    .bias
                    .as_ref()
                    .context("fc2 has no bias")?
                    .val()
                    .into_data(),
                vec![shape.classes],
            ),
        ];
        let mut owned = Vec::new();
        for (name, data, dims) in tensors {
            let values: Vec<f32> = data
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            owned.push((name.to_string(), dims, bytes));
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = owned
            .iter()
            .map(|(n, d, b)| {
                Ok((
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, d.clone(), b)?,
                ))
            })
            .collect::<Result<_>>()?;
        let meta = std::collections::HashMap::from([(
            "shape".to_string(),
            serde_json::to_string(&shape)?,
        )]);
        safetensors::serialize_to_file(views, Some(meta), path)?;
        Ok(())
    }
}
