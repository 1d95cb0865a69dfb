//! `embed`: KAP descriptions → frozen text-encoder embeddings (`embeddings.parquet`).
//!
//! With `ablation.kap = false` the text is the template alone, `"A photo of a {label}."`. The
//! text encoder is the preset's ([`crate::encoders`]: MiniLM, L2-normalised; CLIP's text tower,
//! projected). Its weight files are stage inputs, so new weights re-embed.

use crate::Error;
use crate::encoders::{TextModel, is_clip, text_location, weight_files, weights_hash};
use serde_json::Value;
use sspa_config::ModelSection;
use sspa_dag::{Stage, StageContext, StageError};
use sspa_table::EmbeddingRow;
use std::path::{Path, PathBuf};

pub struct Embed;

fn model_section(params: &Value) -> Result<ModelSection, Error> {
    serde_json::from_value(params.get("model").cloned().unwrap_or(Value::Null))
        .map_err(|e| Error::Unsupported(format!("config `model`: {e}")))
}

impl Stage for Embed {
    fn kind(&self) -> &str {
        "embed"
    }

    fn version(&self) -> u32 {
        2
    }

    fn inputs(&self, params: &Value, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        let model = model_section(params)?;
        Ok(weight_files(&text_location(&model, project_root)?, !is_clip(&model.preset))?)
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let model = model_section(&ctx.params)?;
        let files = weight_files(&text_location(&model, &ctx.project_root)?, !is_clip(&model.preset))?;
        let kap = ctx.params.pointer("/ablation/kap").and_then(Value::as_bool).unwrap_or(true);
        let descriptions = sspa_describe::read_parquet(&ctx.input("describe")?.join(sspa_describe::DESCRIPTIONS_FILE))?;
        let texts: Vec<String> = descriptions
            .iter()
            .map(|row| if kap { row.description.clone() } else { format!("A photo of a {}.", row.label) })
            .collect();
        let device = burn::tensor::Device::flex();
        let encoder = TextModel::load(&model, &ctx.project_root, &device)?;
        let weights_id = weights_hash(&files)?;
        let encoder_name = format!("{}@{}", encoder.name(), &weights_id[..16]);
        ctx.progress.set_length(texts.len() as u64);
        let mut rows = Vec::with_capacity(texts.len());
        for (chunk_rows, chunk_texts) in descriptions.chunks(32).zip(texts.chunks(32)) {
            if ctx.cancelled() {
                return Err("cancelled".into());
            }
            let refs: Vec<&str> = chunk_texts.iter().map(String::as_str).collect();
            let encoded = encoder.encode(&refs)?;
            let [n, dim] = encoded.dims();
            let values = encoded.into_data().try_to_vec::<f32>().map_err(|e| format!("reading embeddings: {e:?}"))?;
            for (i, (row, text)) in chunk_rows.iter().zip(chunk_texts).enumerate().take(n) {
                rows.push(EmbeddingRow {
                    label_id: row.label_id,
                    label: row.label.clone(),
                    sample: row.sample,
                    description_sha256: sspa_prompt::sha256_hex(text.as_bytes()),
                    encoder: encoder_name.clone(),
                    embedding: values[i * dim..(i + 1) * dim].to_vec(),
                });
            }
            ctx.progress.inc(n as u64);
        }
        sspa_table::write_embeddings(&ctx.out_dir.join("embeddings.parquet"), &rows)?;
        Ok(())
    }
}
