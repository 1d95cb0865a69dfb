//! `embed`: KAP descriptions → frozen text-encoder embeddings (`embeddings.parquet`).
//!
//! With `ablation.kap = "template"` the text is the template alone, `"A photo of a {label}."`
//! (also with `"off"`, whose head ignores `T_k`: the stage's output keeps one shape). The
//! text encoder is the preset's ([`sspa_infer::encoders`]: MiniLM, L2-normalised; CLIP's text
//! tower, projected), on the device `train.device` names. Its weight files are stage inputs, so
//! new weights re-embed.

use crate::params::TypedStage;
use serde::{Deserialize, Serialize};
use sspa_config::KapSource;
use sspa_dag::{StageContext, StageError};
use sspa_infer::encoders::{TextModel, text_files, weights_hash};
use sspa_infer::{DeviceSettings, EncoderChoice};
use sspa_table::EmbeddingRow;
use std::path::{Path, PathBuf};

pub struct Embed;

/// `model.preset`, `model.text_weights`, `model.image_weights`, `ablation.kap`, `train.device`,
/// `train.precision`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EmbedParams {
    pub model: EncoderChoice,
    pub ablation: KapSwitch,
    pub train: DeviceSettings,
}

/// `ablation.kap`: LLM descriptions or the template alone.
#[derive(Debug, Serialize, Deserialize)]
pub struct KapSwitch {
    pub kap: KapSource,
}

/// The text a label is embedded from.
fn text_of(kap: KapSource, label: &str, description: &str) -> String {
    match kap {
        KapSource::Llm => description.to_owned(),
        KapSource::Template | KapSource::Off => format!("A photo of a {label}."),
    }
}

impl TypedStage for Embed {
    type Params = EmbedParams;
    const KIND: &'static str = "embed";
    const VERSION: u32 = 2;

    fn inputs(&self, params: &EmbedParams, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        Ok(text_files(&params.model, project_root)?)
    }

    fn run(&self, params: EmbedParams, ctx: &StageContext) -> Result<(), StageError> {
        let files = text_files(&params.model, &ctx.project_root)?;
        let descriptions = sspa_describe::read_parquet(&ctx.input("describe")?.join(sspa_describe::DESCRIPTIONS_FILE))?;
        let texts: Vec<String> =
            descriptions.iter().map(|row| text_of(params.ablation.kap, &row.label, &row.description)).collect();
        let device = sspa_infer::device::select(params.train)?;
        let encoder = TextModel::load(&params.model, &ctx.project_root, &device)?;
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
            let values = encoded
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| format!("reading embeddings: {e:?}"))?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn template_and_off_embed_the_template() {
        use sspa_config::KapSource;
        assert_eq!(super::text_of(KapSource::Llm, "shoe", "A sturdy shoe."), "A sturdy shoe.");
        assert_eq!(super::text_of(KapSource::Template, "shoe", "A sturdy shoe."), "A photo of a shoe.");
        assert_eq!(super::text_of(KapSource::Off, "shoe", "A sturdy shoe."), "A photo of a shoe.");
    }
}
