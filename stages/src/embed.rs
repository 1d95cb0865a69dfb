//! `embed`: KAP descriptions → frozen text-encoder embeddings (`embeddings.parquet`).
//!
//! With `ablation.kap = false` the text is the template alone, `"A photo of a {label}."`. The
//! encoder's weight files are stage inputs, so new weights re-embed.

use crate::Error;
use serde_json::Value;
use sspa_dag::{Stage, StageContext, StageError};
use sspa_encoders::MiniLm;
use sspa_table::EmbeddingRow;
use std::path::{Path, PathBuf};

/// Weight files of the text encoder that decide its output.
const MINILM_FILES: &[&str] = &["config.json", "model.safetensors", "tokenizer.json"];

pub struct Embed;

fn text_weights_dir(params: &Value, project_root: &Path) -> Result<PathBuf, Error> {
    let preset = params.pointer("/model/preset").and_then(Value::as_str).unwrap_or_default();
    if preset != "minilm-efficientnet-lite0" {
        return Err(Error::Unsupported(format!(
            "`model.preset = \"{preset}\"`: this build embeds with MiniLM (`minilm-efficientnet-lite0`) only; \
             the CLIP text tower is not provided yet"
        )));
    }
    Ok(match params.pointer("/model/text_weights").and_then(Value::as_str) {
        Some(dir) => project_root.join(dir),
        None => sspa_encoders::paths::minilm_dir(),
    })
}

impl Stage for Embed {
    fn kind(&self) -> &str {
        "embed"
    }

    fn version(&self) -> u32 {
        1
    }

    fn inputs(&self, params: &Value, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        let dir = text_weights_dir(params, project_root)?;
        if !dir.is_dir() {
            return Err(Error::Unsupported(format!(
                "text-encoder weights not found at `{}`: run `scripts/install-encoders` or set `model.text_weights`",
                dir.display()
            ))
            .into());
        }
        Ok(MINILM_FILES.iter().map(|f| dir.join(f)).collect())
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let dir = text_weights_dir(&ctx.params, &ctx.project_root)?;
        let kap = ctx.params.pointer("/ablation/kap").and_then(Value::as_bool).unwrap_or(true);
        let descriptions = sspa_describe::read_parquet(&ctx.input("describe")?.join(sspa_describe::DESCRIPTIONS_FILE))?;
        let texts: Vec<String> = descriptions
            .iter()
            .map(|row| if kap { row.description.clone() } else { format!("A photo of a {}.", row.label) })
            .collect();
        let device = burn::tensor::Device::flex();
        let encoder = MiniLm::load(&dir, &device)?;
        let weights_id = blake3::hash(&std::fs::read(dir.join("model.safetensors"))?).to_hex();
        let encoder_name = format!("minilm-l6@{}", &weights_id[..16]);
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
