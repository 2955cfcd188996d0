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

    /// Reads a file written by [`Head::save`]; dropout is off (inference).
    pub fn load(path: &Path, device: &Device) -> Result<(Head, HeadShape)> {
        let w = HeadWeights::read(path)?;
        let shape = w.shape;
        use burn::module::Param;
        let data = TensorData::new;
        let mut head = Head::new(shape, 0.0, device);
        head.fc1.weight =
            Param::from_data(data(w.fc1_weight, vec![shape.input, shape.hidden]), device);
        head.fc1.bias = Some(Param::from_data(
            data(w.fc1_bias, vec![shape.hidden]),
            device,
        ));
        head.fc2.weight = Param::from_data(
            data(w.fc2_weight, vec![shape.hidden, shape.classes]),
            device,
        );
        head.fc2.bias = Some(Param::from_data(
            data(w.fc2_bias, vec![shape.classes]),
            device,
        ));
        Ok((head, shape))
    }

    /// Class probabilities, row-major [rows × classes], for features [rows × input].
    pub fn probabilities(
        &self,
        features: Vec<f32>,
        rows: usize,
        input: usize,
        device: &Device,
    ) -> Result<Vec<f32>> {
        let x = Tensor::from_data(TensorData::new(features, [rows, input]), device);
        self.forward(x)
            .exp()
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    }
}

/// The four tensors of a file written by [`Head::save`], as plain row-major
/// vectors (`fc1_weight` is [input × hidden]): for readers without burn.
pub struct HeadWeights {
    pub shape: HeadShape,
    pub fc1_weight: Vec<f32>,
    pub fc1_bias: Vec<f32>,
    pub fc2_weight: Vec<f32>,
    pub fc2_bias: Vec<f32>,
}

impl HeadWeights {
    pub fn read(path: &Path) -> Result<HeadWeights> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{} is not a safetensors file", path.display()))?;
        let shape: HeadShape = serde_json::from_str(
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get("shape"))
                .with_context(|| {
                    format!("{}: head weights without shape metadata", path.display())
                })?,
        )?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        let tensor = |name: &str, dims: &[usize]| -> Result<Vec<f32>> {
            let view = st
                .tensor(name)
                .with_context(|| format!("{}: no {name}", path.display()))?;
            anyhow::ensure!(
                view.shape() == dims,
                "{}: {name} has shape {:?}, expected {dims:?}",
                path.display(),
                view.shape()
            );
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        Ok(HeadWeights {
            fc1_weight: tensor("fc1.weight", &[shape.input, shape.hidden])?,
            fc1_bias: tensor("fc1.bias", &[shape.hidden])?,
            fc2_weight: tensor("fc2.weight", &[shape.hidden, shape.classes])?,
            fc2_bias: tensor("fc2.bias", &[shape.classes])?,
            shape,
        })
    }
}
