//! The fields of a Hugging Face BERT `config.json` the converter needs.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default)]
    pub hidden_act: HiddenAct,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

/// The feed-forward activation (`hidden_act`), as transformers names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum HiddenAct {
    /// Exact GELU, with erf.
    #[default]
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`: the
    /// same function).
    GeluTanh(TanhName),
    Relu,
}

/// Which of transformers' two names for the tanh GELU the config used
/// (kept so the config is written back as read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TanhName {
    GeluNew,
    GeluPytorchTanh,
}

impl TryFrom<String> for HiddenAct {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        Ok(match name.as_str() {
            "gelu" => HiddenAct::Gelu,
            "gelu_new" => HiddenAct::GeluTanh(TanhName::GeluNew),
            "gelu_pytorch_tanh" => HiddenAct::GeluTanh(TanhName::GeluPytorchTanh),
            "relu" => HiddenAct::Relu,
            _ => {
                return Err(format!(
                    "hidden_act {name:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
                ));
            }
        })
    }
}

impl From<HiddenAct> for &'static str {
    fn from(act: HiddenAct) -> &'static str {
        match act {
            HiddenAct::Gelu => "gelu",
            HiddenAct::GeluTanh(TanhName::GeluNew) => "gelu_new",
            HiddenAct::GeluTanh(TanhName::GeluPytorchTanh) => "gelu_pytorch_tanh",
            HiddenAct::Relu => "relu",
        }
    }
}
fn default_positions() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    pub fn load(path: &Path) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: BertConfig = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a BERT config.json (needs hidden_size, num_hidden_layers, ...)",
                path.display()
            )
        })?;
        config
            .check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || self.hidden_size % self.num_attention_heads != 0
        {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.position_embedding_type != "absolute" {
            bail!(
                "position_embedding_type {:?} is not supported (absolute)",
                self.position_embedding_type
            );
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_act(act: &str) -> serde_json::Result<BertConfig> {
        serde_json::from_str(&format!(
            r#"{{"vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 8, "hidden_act": "{act}"}}"#
        ))
    }

    #[test]
    fn hidden_act_reads_and_writes_back_transformers_names() {
        for (name, act) in [
            ("gelu", HiddenAct::Gelu),
            ("gelu_new", HiddenAct::GeluTanh(TanhName::GeluNew)),
            (
                "gelu_pytorch_tanh",
                HiddenAct::GeluTanh(TanhName::GeluPytorchTanh),
            ),
            ("relu", HiddenAct::Relu),
        ] {
            let config = config_with_act(name).unwrap();
            assert_eq!(config.hidden_act, act);
            let written = serde_json::to_value(&config).unwrap();
            assert_eq!(written["hidden_act"], name);
        }
    }

    #[test]
    fn an_unsupported_hidden_act_is_named() {
        let err = config_with_act("swish").unwrap_err().to_string();
        assert!(
            err.contains(r#"hidden_act "swish" is not supported (gelu, gelu_new"#),
            "{err}"
        );
    }
}
