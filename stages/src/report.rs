//! `report`: `report.md` and a self-contained `report.html` (sspa-report) from the evaluate
//! stage's scores and metrics and the train stage's history, plus `maps/*.png`: the evaluate
//! stage's attention and gate maps (`maps.json`) drawn over the images from the shards.
//!
//! The report depends on its inputs alone (nothing from the stage's state directory, no git
//! commit: run records keep those), so its cache key covers everything it shows.
//!
//! Lineage comes from the upstream results' `.sspa-done.json` (the runner's record of every
//! declared param and input-file hash that went into their cache keys): the stage itself sees
//! only its own params, but its upstream stages together read the whole resolved config.

use crate::params::TypedStage;
use serde::{Deserialize, Serialize};
use sspa_config::{DomainSection, EvaluateSection};
use sspa_dag::store::{DONE_MARKER, ResultInfo};
use sspa_dag::{StageContext, StageError};
use sspa_report::heatmap::{PatchMap, RgbImage, overlay_png};
use sspa_report::maps::{MAPS_FILE, MapsFile};
use sspa_report::{DescriptionTokens, EpochRecord, Lineage, ModelMetrics, ReportData, ReportImage};
use std::collections::BTreeMap;
use std::path::Path;

/// Directory of the map PNGs in the output.
const MAPS_DIR: &str = "maps";

pub struct Report;

/// `domain`, `evaluate`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportParams {
    pub domain: DomainSection,
    pub evaluate: EvaluateSection,
}

fn dir_name(dir: &Path) -> Option<String> {
    dir.file_name().map(|name| name.to_string_lossy().into_owned())
}

impl TypedStage for Report {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    /// 3: no delta against a previous run's state, no git commit (neither is in the key).
    /// 4: the lineage shows the descriptions' token totals.
    const VERSION: u32 = 4;

    fn run(&self, params: ReportParams, ctx: &StageContext) -> Result<(), StageError> {
        let ReportParams { domain, evaluate: section } = params;
        let options = crate::evaluate::eval_options(&section);
        let evaluate_dir = ctx.input("evaluate")?;
        let train_dir = ctx.input("train")?;
        let run_id = dir_name(evaluate_dir).map(|key| key.chars().take(16).collect::<String>()).unwrap_or_default();

        // Current metrics (and the chart data) from the scores themselves.
        let targets = evaluate_dir.join("targets.parquet");
        let raw_data = sspa_metrics::read_eval_data(&evaluate_dir.join("scores.parquet"), &targets)?;
        let raw = sspa_metrics::evaluate_data(&raw_data, &options)?;
        let mut models = vec![ModelMetrics::from_report("raw", &raw)];
        let ema_scores = evaluate_dir.join("scores_ema.parquet");
        if ema_scores.is_file() {
            let ema_data = sspa_metrics::read_eval_data(&ema_scores, &targets)?;
            models.push(ModelMetrics::from_report("EMA", &sspa_metrics::evaluate_data(&ema_data, &options)?));
        }
        let pr_curves = sspa_metrics::best_and_worst_curves(&raw_data, &raw, 3, 200);

        let history = sspa_train::read_history(&train_dir.join(sspa_train::files::HISTORY))?;
        let training = history
            .iter()
            .map(|log| EpochRecord {
                epoch: log.epoch,
                train_loss: log.train_loss,
                learning_rate: log.lr,
                val_map_raw: log.val_map,
                val_map_ema: log.val_map_ema,
            })
            .collect();

        let config = sspa_train::ModelConfig::load(&train_dir.join(sspa_train::files::CONFIG))?;
        let mut lineage = lineage(ctx)?;
        lineage.model_preset = Some(config.model.preset.name().to_owned());
        let images = map_images(ctx, evaluate_dir)?;

        let data = ReportData {
            domain: domain.name.clone(),
            run_id: run_id.clone(),
            models,
            per_class_ap: raw.per_class_ap.clone(),
            chart_model: "raw".into(),
            classes_without_positives: raw.classes_without_positives.clone(),
            pr_curves,
            training,
            previous: None,
            lineage,
            images,
        };
        let (markdown, html) = sspa_report::render(&data);
        sspa_dag::write_atomic(&ctx.out_dir.join("report.md"), markdown.as_bytes())?;
        sspa_dag::write_atomic(&ctx.out_dir.join("report.html"), html.as_bytes())?;

        Ok(())
    }
}

/// The runner's record of an upstream result (`None` for a directory without one).
fn result_info(dir: &Path) -> Result<Option<ResultInfo>, StageError> {
    let path = dir.join(DONE_MARKER);
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).map_err(|e| format!("parsing `{}`: {e}", path.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading `{}`: {e}", path.display()).into()),
    }
}

/// Hex BLAKE3 of the canonical JSON of `value`.
fn json_hash(value: &serde_json::Value) -> String {
    blake3::hash(sspa_dag::key::canonical_json(value).as_bytes()).to_hex().to_string()
}

/// Flat `a.b → value` params, nested again (`{"a": {"b": value}}`); parents before children.
fn nest(flat: &BTreeMap<String, serde_json::Value>) -> serde_json::Value {
    let mut nested = serde_json::Value::Object(serde_json::Map::new());
    for (path, value) in flat {
        let segments: Vec<&str> = path.split('.').collect();
        let mut at = &mut nested;
        for (index, segment) in segments.iter().enumerate() {
            let serde_json::Value::Object(map) = at else { break };
            if index + 1 == segments.len() {
                map.insert((*segment).to_owned(), value.clone());
                break;
            }
            at = map.entry((*segment).to_owned()).or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        }
    }
    nested
}

/// The hashes of [`Lineage`], as its rows document them.
fn lineage(ctx: &StageContext) -> Result<Lineage, StageError> {
    lineage_of(&ctx.inputs, &ctx.params)
}

/// [`lineage`] from the upstream output directories (`describe`, `shard`, `train`, ...) and this
/// stage's own params (also what the model registry records for a promoted model).
pub fn lineage_of(
    inputs: &BTreeMap<String, std::path::PathBuf>,
    own_params: &serde_json::Value,
) -> Result<Lineage, StageError> {
    let mut infos = BTreeMap::new();
    for (stage, dir) in inputs {
        if let Some(info) = result_info(dir)? {
            infos.insert(stage.as_str(), info);
        }
    }
    // Config: every upstream stage's declared params and this stage's own.
    let mut params: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for info in infos.values() {
        params.extend(info.parts.params.iter().map(|(path, value)| (path.clone(), value.clone())));
    }
    if let serde_json::Value::Object(own) = own_params {
        params.extend(own.iter().map(|(path, value)| (path.clone(), value.clone())));
    }
    let mut files = Vec::new();
    let mut file_hash = |info: Option<&ResultInfo>| {
        let deps = info.map(|info| &info.parts.deps).filter(|deps| !deps.is_empty())?;
        files.extend(deps.iter().map(|(path, hash)| (path.clone(), hash.clone())));
        Some(json_hash(&serde_json::to_value(deps).ok()?))
    };
    let manifest_hash = file_hash(infos.get("shard"));
    let weights_hash = file_hash(infos.get("train"));
    let describe = inputs.get("describe").ok_or("the report stage needs the output of `describe`")?;
    let descriptions = describe.join(sspa_describe::DESCRIPTIONS_FILE);
    let description_cache_hash = match std::fs::read(&descriptions) {
        Ok(bytes) => Some(blake3::hash(&bytes).to_hex().to_string()),
        Err(e) => return Err(format!("reading `{}`: {e}", descriptions.display()).into()),
    };
    // From the same published file as the hash (the describe result, inside this stage's key
    // through describe's), not from the stage's state or its run-dependent summary.
    let rows = sspa_describe::read_parquet(&descriptions)?;
    let mut description_tokens = DescriptionTokens { answers: rows.len(), ..DescriptionTokens::default() };
    for row in &rows {
        match (row.prompt_tokens, row.completion_tokens) {
            (None, None) => description_tokens.answers_without_usage += 1,
            (prompt, completion) => {
                description_tokens.prompt_tokens += prompt.unwrap_or(0);
                description_tokens.completion_tokens += completion.unwrap_or(0);
            }
        }
    }
    Ok(Lineage {
        config_hash: Some(json_hash(&nest(&params))),
        manifest_hash,
        description_cache_hash,
        description_tokens: Some(description_tokens),
        model_preset: None,
        weights_hash,
        git_commit: None,
        files,
    })
}

/// `a-z0-9` and `-` only, for file names.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for character in text.chars().flat_map(char::to_lowercase) {
        if character.is_ascii_alphanumeric() {
            out.push(character);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    out.chars().take(40).collect()
}

/// Draws `maps.json` of the evaluate stage over the images from the shards into
/// `out_dir/maps/`; none when the evaluate result has no maps.
fn map_images(ctx: &StageContext, evaluate_dir: &Path) -> Result<Vec<ReportImage>, StageError> {
    let path = evaluate_dir.join(MAPS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("report: no `{}`, so no attention maps", path.display());
            return Ok(Vec::new());
        }
        Err(e) => return Err(format!("reading `{}`: {e}", path.display()).into()),
    };
    let maps: MapsFile = serde_json::from_str(&text).map_err(|e| format!("parsing `{}`: {e}", path.display()))?;
    if maps.images.is_empty() {
        if let Some(note) = &maps.note {
            tracing::info!("report: no attention maps: {note}");
        }
        return Ok(Vec::new());
    }
    let shards = sspa_data::open_shards(ctx.input("shard")?)?;
    let reader = shards.split(&maps.split)?;
    let [rows, columns] = maps.grid;
    std::fs::create_dir_all(ctx.out_dir.join(MAPS_DIR))?;
    let mut images = Vec::new();
    for (index, image) in maps.images.iter().enumerate() {
        let record = reader.records().get(image.row).filter(|record| record.path == image.image).ok_or_else(|| {
            format!("`{}`: image `{}` is not row {} of the shards", path.display(), image.image, image.row)
        })?;
        let pixels = reader.read_pixels(image.row)?;
        let rgb = RgbImage { width: record.width, height: record.height, pixels: &pixels };
        let mut draw = |name: String, caption: String, values: &[f32]| -> Result<(), StageError> {
            let map = PatchMap { rows, columns, values };
            let png = overlay_png(&rgb, &map).map_err(|e| format!("map `{caption}`: {e}"))?;
            let file = format!("{MAPS_DIR}/{name}.png");
            sspa_dag::write_atomic(&ctx.out_dir.join(&file), &png)?;
            images.push(ReportImage { caption, file: Some(file), png });
            Ok(())
        };
        let number = index + 1;
        for label in &image.labels {
            let Some(weights) = &label.weights else { continue };
            let (low, high) = PatchMap { rows, columns, values: weights }.range();
            let truth = match label.target {
                1 => "positive",
                0 => "negative",
                _ => "ignored",
            };
            draw(
                format!("image{number}-{}", slug(&label.label)),
                format!(
                    "image {number} ({}), “{}” (p = {:.2}, {truth}): aggregator weights {low:.3}–{high:.3}",
                    image.image, label.label, label.score
                ),
                weights,
            )?;
        }
        if let Some(gate) = &image.gate {
            let (low, high) = PatchMap { rows, columns, values: gate }.range();
            draw(
                format!("image{number}-gate"),
                format!("image {number} ({}): S→V patch gate, mean over d, {low:.3}–{high:.3}", image.image),
                gate,
            )?;
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sspa_dag::key::KeyParts;

    fn done(dir: &Path, params: serde_json::Value, deps: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).expect("dir");
        let serde_json::Value::Object(params) = params else { panic!("params object") };
        let info = ResultInfo {
            key: "k".into(),
            parts: KeyParts {
                key_format: 1,
                kind: "x".into(),
                kind_version: 1,
                params: params.into_iter().collect(),
                deps: deps.iter().map(|(path, hash)| ((*path).to_owned(), (*hash).to_owned())).collect(),
                upstream: BTreeMap::new(),
            },
            outs: Vec::new(),
            finished_at: String::new(),
            duration_s: 0.0,
        };
        sspa_dag::write_json_atomic(&dir.join(DONE_MARKER), &info).expect("done marker");
    }

    #[test]
    fn nest_rebuilds_the_config_tree() {
        let flat: BTreeMap<String, serde_json::Value> = [
            ("data".to_owned(), json!({"manifest": "m.toml", "root": "r"})),
            ("data.manifest".to_owned(), json!("m.toml")),
            ("model.preset".to_owned(), json!("p")),
            ("model.image_size".to_owned(), json!(32)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            nest(&flat),
            json!({"data": {"manifest": "m.toml", "root": "r"}, "model": {"preset": "p", "image_size": 32}})
        );
    }

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(slug("T-shirt/top"), "t-shirt-top");
        assert_eq!(slug("  Ankle boot! "), "ankle-boot");
        assert_eq!(slug("../../etc"), "etc");
    }

    #[test]
    fn lineage_hashes_come_from_the_upstream_records() {
        let root = std::env::temp_dir().join(format!("sspa-report-lineage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (describe, shard, train) = (root.join("describe"), root.join("shard"), root.join("train"));
        done(&describe, json!({"domain": {"name": "d"}, "data.manifest": "m.toml"}), &[("m.toml", "aa")]);
        let answer = |label: &str, prompt: Option<u64>, completion: Option<u64>| -> sspa_describe::CacheRow {
            serde_json::from_value(json!({
                "label_id": 0, "label": label, "domain": "d", "sample": 0, "prompt_sha256": "p",
                "request_key": label, "model": "m", "params_json": "{}", "raw": "r", "description": "d",
                "created_at": "2026-01-01T00:00:00Z", "prompt_tokens": prompt, "completion_tokens": completion,
            }))
            .expect("row")
        };
        let descriptions = describe.join(sspa_describe::DESCRIPTIONS_FILE);
        let rows = [answer("a", Some(30), Some(12)), answer("b", Some(28), Some(9)), answer("c", None, None)];
        sspa_describe::write_parquet(&descriptions, &rows).expect("write");
        done(&shard, json!({"data": {"manifest": "m.toml"}}), &[("m.toml", "aa"), ("ann.json", "bb")]);
        done(&train, json!({"model": {"preset": "p"}}), &[("/w/model.safetensors", "cc")]);
        let inputs: BTreeMap<String, std::path::PathBuf> =
            [("describe", &describe), ("shard", &shard), ("train", &train)]
                .into_iter()
                .map(|(name, dir)| (name.to_owned(), dir.clone()))
                .collect();
        let own = json!({"domain": {"name": "d"}, "evaluate": {"kind": "natural"}});
        let lineage = lineage_of(&inputs, &own).expect("lineage");
        let hash = |value: serde_json::Value| blake3::hash(value.to_string().as_bytes()).to_hex().to_string();
        // Canonical JSON: keys sorted, no spaces (serde_json's `to_string` of sorted maps).
        let config = json!({"data": {"manifest": "m.toml"}, "domain": {"name": "d"}, "evaluate": {"kind": "natural"},
            "model": {"preset": "p"}});
        assert_eq!(lineage.config_hash, Some(hash(config)));
        assert_eq!(lineage.manifest_hash, Some(hash(json!({"ann.json": "bb", "m.toml": "aa"}))));
        assert_eq!(lineage.weights_hash, Some(hash(json!({"/w/model.safetensors": "cc"}))));
        let bytes = std::fs::read(&descriptions).expect("read");
        assert_eq!(lineage.description_cache_hash, Some(blake3::hash(&bytes).to_hex().to_string()));
        assert_eq!(
            lineage.description_tokens,
            Some(DescriptionTokens { prompt_tokens: 58, completion_tokens: 21, answers: 3, answers_without_usage: 1 }),
            "summed over the published descriptions; the answer without usage is counted apart"
        );
        assert_eq!(lineage.files.len(), 3);
        // Another config value changes the config hash.
        let other = json!({"domain": {"name": "e"}, "evaluate": {"kind": "natural"}});
        assert_ne!(lineage_of(&inputs, &other).expect("lineage").config_hash, lineage.config_hash);
        std::fs::remove_dir_all(&root).expect("clean up");
    }
}
