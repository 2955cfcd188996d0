//! Whether the current results of a stage and of everything upstream of it
//! still form one chain of digests: what `predict` relies on.

use std::path::Path;

use anyhow::Result;

use crate::manifest::LockFile;
use crate::plan::Pipeline;
use crate::stage::Input;

/// Why current results do not form one chain ([`Pipeline::chain_break`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// `stage` has no current result.
    Missing { stage: String },
    /// `artifacts/<stage>` does not link to the result the lock names.
    Unlinked { stage: String, key: String },
    /// The current result of `stage` was made from another result of
    /// `upstream` than its current one (`upstream` ran again since).
    Stale { stage: String, upstream: String },
}

impl Pipeline {
    /// Where the current results of `stage` and of every stage it reads
    /// from stop forming one chain (upstream first), or `None` if they form
    /// one: each result present in `lock` and linked from `artifacts/`, and
    /// each recorded input digest equal to the current upstream output's.
    /// Follows the declared inputs, so it holds for any stage graph.
    pub fn chain_break(
        &self,
        artifacts: &Path,
        lock: &LockFile,
        stage: &str,
    ) -> Result<Option<ChainBreak>> {
        for i in self.ancestors_and_self(stage)? {
            let name = self.stages[i].name().to_string();
            let Some(entry) = lock.stages.get(&name) else {
                return Ok(Some(ChainBreak::Missing { stage: name }));
            };
            if !crate::store::links_to(artifacts, &name, &entry.key) {
                let key = entry.key.clone();
                return Ok(Some(ChainBreak::Unlinked { stage: name, key }));
            }
            for input in self.stages[i].inputs() {
                let Input::Stage { stage: up, output } = &input else {
                    continue;
                };
                let recorded = entry.inputs.get(&input.name()).map(|r| &r.digest);
                let current = lock.stages[up].outputs.get(output).map(|o| &o.digest);
                if recorded != current {
                    return Ok(Some(ChainBreak::Stale {
                        stage: name,
                        upstream: up.clone(),
                    }));
                }
            }
        }
        Ok(None)
    }
}
