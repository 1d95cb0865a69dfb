//! Warm start: a new run starts from the weights of a trained model (a train output directory,
//! see [`crate::predict`]) instead of the seeded initialisation, e.g. for scheduled retraining.
//!
//! The run's model is built as usual (seeded; with the pretrained backbone when the image encoder
//! is trained), then every tensor of the old weights file is copied into it by parameter path:
//! - tensors that do not depend on the label set (nearly all: SSPA's classes are label
//!   embeddings) must have the same shape in both models and are copied as they are;
//! - class-dependent tensors (the head's [`sspa_model::HeadConfig::class_axes`], one slice per class along
//!   an axis) are remapped by label name: slices of labels in both runs are copied, added labels
//!   keep their fresh slices, slices of removed labels are dropped. This holds for every head kind
//!   whose classes have slices of their own; a query decoder that scores classes in groups (fewer
//!   queries than classes) is warm-started only onto the same labels;
//! - a tensor of the old model that this run's model lacks, or whose shape differs otherwise,
//!   means the architecture differs: [`TrainError::WarmStartArchitecture`] names them all;
//! - tensors of this run's model that the old file lacks (e.g. an image encoder now trained)
//!   keep their initialisation and are listed in [`WarmStartReport::kept_init`].
//!
//! The tensors are read and written with burn-store's safetensors snapshots, the mechanism of
//! [`crate::save_weights`] and [`crate::load_weights`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ModuleSnapshot, ModuleStore, SafetensorsStore, bridge};
use serde::{Deserialize, Serialize};

use crate::error::{TensorMismatch, TrainError};
use crate::model::{ModelConfig, SKIP_ENUM_VARIANTS, SspaModel, match_device_float, renumber};
use crate::predict::{Weights, expect, files};
use sspa_model::ClassAxis;

/// The model's class-dependent tensors by parameter path (`head.class_weights`), each with its
/// class axis: the head's [`sspa_model::HeadConfig::class_axes`] under the model's `head`.
fn class_axes(axes: Vec<ClassAxis>) -> BTreeMap<String, usize> {
    axes.into_iter().map(|class| (format!("head.{}", class.tensor), class.axis)).collect()
}

/// Where a warm-started run takes its initial weights from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmStart {
    /// A train output directory: `config.json`, `model.safetensors`, `model_ema.safetensors`.
    pub dir: PathBuf,
    /// Its raw or its EMA weights.
    pub weights: Weights,
}

/// What a warm start copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmStartReport {
    /// The weights file the run started from.
    pub weights: PathBuf,
    /// Tensors copied as they are.
    pub tensors_copied: usize,
    /// Class-dependent tensors ([`sspa_model::HeadConfig::class_axes`]) remapped by label name.
    pub tensors_remapped: usize,
    /// Class slices copied into those tensors, summed over them.
    pub rows_remapped: usize,
    /// Labels of this run that the old model did not have (their rows keep the fresh init).
    pub labels_added: Vec<String>,
    /// Labels of the old model that this run does not have (their rows are dropped).
    pub labels_removed: Vec<String>,
    /// Tensors of this run's model absent from the old file: they keep their initialisation.
    pub kept_init: Vec<String>,
}

impl WarmStart {
    /// A warm start from the `weights` of the train output directory `dir`.
    pub fn new(dir: impl Into<PathBuf>, weights: Weights) -> Self {
        Self { dir: dir.into(), weights }
    }

    /// The weights file: `model.safetensors` or `model_ema.safetensors` in [`WarmStart::dir`].
    pub fn weights_file(&self) -> PathBuf {
        self.dir.join(match self.weights {
            Weights::Raw => files::MODEL,
            Weights::Ema => files::MODEL_EMA,
        })
    }

    /// BLAKE3 over which weights file, the old `config.json` (canonical JSON) and the weights
    /// file's bytes: what a checkpoint's fingerprint records of the start.
    ///
    /// # Errors
    /// [`TrainError::Io`] naming the weights file, or the errors of [`ModelConfig::load`].
    pub fn identity(&self) -> Result<String, TrainError> {
        let config = ModelConfig::load(&self.dir.join(files::CONFIG))?;
        let weights = self.weights_file();
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"sspa-train warm start\0");
        hasher.update(format!("{:?}\0", self.weights).as_bytes());
        hasher.update(config.canonical_json().as_bytes());
        hasher.update(b"\0");
        hasher.update_mmap(&weights).map_err(TrainError::io(&weights))?;
        Ok(hasher.finalize().to_hex().to_string())
    }

    /// Copies the old model's tensors into `model`, a freshly initialised model of `config` (see
    /// the module docs); parameter ids are renumbered as for a model built from `config`.
    ///
    /// # Errors
    /// [`TrainError::WarmStartArchitecture`] when the architectures differ;
    /// [`TrainError::Mismatch`] when `model` has another class count than `config`;
    /// [`TrainError::Weights`] for an unreadable weights file or one inconsistent with its
    /// `config.json`; the errors of [`ModelConfig::load`].
    pub fn apply(&self, model: SspaModel, config: &ModelConfig) -> Result<(SspaModel, WarmStartReport), TrainError> {
        let old_config = ModelConfig::load(&self.dir.join(files::CONFIG))?;
        let axes = match (config.head.class_axes(), old_config.head.class_axes()) {
            (Some(axes), Some(_)) => class_axes(axes),
            // Grouped classes: only the same label set maps slice for slice.
            _ if old_config.labels == config.labels => BTreeMap::new(),
            _ => {
                return Err(TrainError::Option {
                    key: "train.init",
                    value: format!("a `{}` head", config.head.kind()),
                    reason: "its queries score classes in groups (more classes than `max_queries`), so a warm \
                             start cannot remap them by label; keep the label set or train from scratch \
                             (`train.init = \"scratch\"`)",
                });
            }
        };
        let path = self.weights_file();
        let old = read_tensors(&path)?;
        let fresh: BTreeMap<String, PackTensor> = model
            .collect(None, None, SKIP_ENUM_VARIANTS)
            .into_iter()
            .map(|tensor| (tensor.name.clone(), tensor))
            .collect();
        check_architecture(&path, &old, &fresh, &axes)?;
        check_class_counts(&path, &old, old_config.labels.len(), &axes)?;

        let labels = LabelMap::new(&old_config.labels, &config.labels);
        let kept_init: Vec<String> = fresh.keys().filter(|name| !old.contains_key(*name)).cloned().collect();
        let (tensors, tensors_remapped) = adapted_tensors(&path, old, &fresh, &labels, &axes)?;
        let tensors_copied = tensors.len() - tensors_remapped;
        let model = apply_tensors(model, tensors, &path)?;
        if !kept_init.is_empty() {
            tracing::info!(
                "train: warm start: {} tensor(s) of this run's model are not in `{}` and keep their initialisation: {}",
                kept_init.len(),
                path.display(),
                kept_init.join(", ")
            );
        }
        let report = WarmStartReport {
            weights: path,
            tensors_copied,
            tensors_remapped,
            rows_remapped: tensors_remapped * labels.shared(),
            labels_added: labels_missing_from(&config.labels, &old_config.labels),
            labels_removed: labels_missing_from(&old_config.labels, &config.labels),
            kept_init,
        };
        Ok((model, report))
    }
}

/// Every tensor of the safetensors file `path`, by parameter path.
fn read_tensors(path: &Path) -> Result<BTreeMap<String, PackTensor>, TrainError> {
    if !path.is_file() {
        return Err(TrainError::Weights { path: path.to_owned(), reason: "file not found".into() });
    }
    let mut store = SafetensorsStore::from_file(path);
    let tensors = store
        .get_all_tensors()
        .map_err(|error| TrainError::Weights { path: path.to_owned(), reason: error.to_string() })?;
    Ok(tensors.clone())
}

/// Refuses old tensors that this run's model lacks or that differ in shape beyond the class axis
/// of the class-dependent ones (`axes`).
fn check_architecture(
    path: &Path,
    old: &BTreeMap<String, PackTensor>,
    fresh: &BTreeMap<String, PackTensor>,
    axes: &BTreeMap<String, usize>,
) -> Result<(), TrainError> {
    let mismatches: Vec<TensorMismatch> = old
        .iter()
        .filter_map(|(name, tensor)| {
            let old_shape = tensor.shape.to_vec();
            let new_shape = fresh.get(name).map(|fresh| fresh.shape.to_vec());
            let fits = new_shape.as_ref().is_some_and(|new_shape| match axes.get(name) {
                Some(&axis) => {
                    let others = |shape: &[usize]| -> Vec<usize> {
                        shape.iter().enumerate().filter(|(at, _)| *at != axis).map(|(_, size)| *size).collect()
                    };
                    axis < old_shape.len()
                        && old_shape.len() == new_shape.len()
                        && others(&old_shape) == others(new_shape)
                }
                None => old_shape == *new_shape,
            });
            (!fits).then(|| TensorMismatch { tensor: name.clone(), old: old_shape, new: new_shape })
        })
        .collect();
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(TrainError::WarmStartArchitecture { path: path.to_owned(), mismatches })
    }
}

/// Refuses class-dependent tensors whose class axis is not the old `config.json`'s label count.
fn check_class_counts(
    path: &Path,
    old: &BTreeMap<String, PackTensor>,
    old_classes: usize,
    axes: &BTreeMap<String, usize>,
) -> Result<(), TrainError> {
    for (name, &axis) in axes {
        let Some(tensor) = old.get(name) else { continue };
        let classes = tensor.shape.get(axis).copied().unwrap_or(0);
        if classes != old_classes {
            return Err(TrainError::Weights {
                path: path.to_owned(),
                reason: format!(
                    "`{name}` has {classes} classes on axis {axis} but its `config.json` lists {old_classes} labels"
                ),
            });
        }
    }
    Ok(())
}

/// For each label of the new run, the row of the same label in the old model (its first
/// occurrence there), if any.
struct LabelMap {
    rows: Vec<Option<usize>>,
}

impl LabelMap {
    fn new(old: &[String], new: &[String]) -> Self {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (row, label) in old.iter().enumerate() {
            index.entry(label.as_str()).or_insert(row);
        }
        Self { rows: new.iter().map(|label| index.get(label.as_str()).copied()).collect() }
    }

    /// New rows that take an old row.
    fn shared(&self) -> usize {
        self.rows.iter().flatten().count()
    }
}

/// Labels of `these` whose name is not in `others`, in order, each once.
fn labels_missing_from(these: &[String], others: &[String]) -> Vec<String> {
    let others: HashSet<&str> = others.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    these.iter().filter(|label| !others.contains(label.as_str()) && seen.insert(label.as_str())).cloned().collect()
}

/// The values of `tensor` as `f32` (exact for the f32 and bf16 weights files hold).
fn f32_values(path: &Path, tensor: &PackTensor) -> Result<Vec<f32>, TrainError> {
    let weights_error = |reason: String| TrainError::Weights { path: path.to_owned(), reason };
    let data = bridge::to_data(tensor).map_err(|error| weights_error(format!("`{}`: {error}", tensor.name)))?;
    data.try_into_vec_as::<f32>().map_err(|error| weights_error(format!("`{}`: {error:?}", tensor.name)))
}

/// The fresh class-dependent tensor with the slices (along `axis`) of the labels in both runs
/// taken from `old`.
fn remap_classes(
    path: &Path,
    old: &PackTensor,
    fresh: &PackTensor,
    axis: usize,
    labels: &LabelMap,
) -> Result<PackTensor, TrainError> {
    let classes = |shape: &[usize]| shape.get(axis).copied().unwrap_or(0);
    expect("classes of the model", classes(&fresh.shape), labels.rows.len())?;
    // `[outer…, C, inner…]`: a slice of one class is `inner` values, `outer` times, `C·inner` apart.
    let outer: usize = fresh.shape[..axis].iter().product();
    let inner: usize = fresh.shape[axis + 1..].iter().product();
    let (new_stride, old_stride) = (labels.rows.len() * inner, classes(&old.shape) * inner);
    let old_values = f32_values(path, old)?;
    let mut values = f32_values(path, fresh)?;
    for (new_class, old_class) in labels.rows.iter().enumerate() {
        let Some(old_class) = old_class else { continue };
        for block in 0..outer {
            let to = block * new_stride + new_class * inner;
            let from = block * old_stride + old_class * inner;
            values[to..to + inner].copy_from_slice(&old_values[from..from + inner]);
        }
    }
    Ok(bridge::from_data(TensorData::new(values, fresh.shape.clone()), fresh.name.clone(), None))
}

/// `tensor` without the parameter id it was saved with (the model keeps its own ids).
fn without_id(path: &Path, tensor: PackTensor) -> Result<PackTensor, TrainError> {
    let (name, dtype, shape, _, bytes) = tensor
        .into_parts()
        .map_err(|error| TrainError::Weights { path: path.to_owned(), reason: error.to_string() })?;
    Ok(PackTensor::new(name, dtype, shape, None, bytes))
}

/// The old tensors as they will be applied: class-dependent ones (`axes`) remapped by label, the
/// others as they are; also how many were remapped. Expects [`check_architecture`] to have passed.
fn adapted_tensors(
    path: &Path,
    old: BTreeMap<String, PackTensor>,
    fresh: &BTreeMap<String, PackTensor>,
    labels: &LabelMap,
    axes: &BTreeMap<String, usize>,
) -> Result<(Vec<PackTensor>, usize), TrainError> {
    let mut remapped = 0;
    let mut tensors = Vec::with_capacity(old.len());
    for (name, tensor) in old {
        match (fresh.get(&name), axes.get(&name)) {
            (Some(fresh_tensor), Some(&axis)) => {
                tensors.push(remap_classes(path, &tensor, fresh_tensor, axis, labels)?);
                remapped += 1;
            }
            _ => tensors.push(without_id(path, tensor)?),
        }
    }
    Ok((tensors, remapped))
}

/// Writes `tensors` into `model`; each must land on a parameter of the same shape.
fn apply_tensors(mut model: SspaModel, tensors: Vec<PackTensor>, path: &Path) -> Result<SspaModel, TrainError> {
    let result = model.apply(tensors, None, None, SKIP_ENUM_VARIANTS);
    if !result.errors.is_empty() || !result.unused.is_empty() {
        return Err(TrainError::Weights {
            path: path.to_owned(),
            reason: format!(
                "warm start: errors {:?}, unused {:?}",
                result.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                result.unused
            ),
        });
    }
    Ok(renumber(match_device_float(model)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FORMAT_VERSION;
    use sspa_config::{
        AblationSection, Aggregator, Alignment, Branches, Classifier, ImageProjectionKind, KapSource, ModelSection,
        Synthesis, TrainSection,
    };
    use sspa_model::{HeadConfig, HeadKind, SspaHeadConfig};

    fn config(model: &ModelSection, ablation: &AblationSection, classes: usize) -> ModelConfig {
        let text_width = 12;
        let image_width = if model.image_projection == ImageProjectionKind::None { 16 } else { 20 };
        ModelConfig {
            format_version: FORMAT_VERSION,
            head: sspa_model::HeadConfig::Sspa(
                SspaHeadConfig::from_sections(model, ablation, Some(text_width), image_width, classes).expect("head"),
            ),
            model: model.clone(),
            ablation: ablation.clone(),
            train: TrainSection::default(),
            labels: (0..classes).map(|class| format!("label-{class}")).collect(),
            text_width,
            prompt_tokens: if ablation.cap { model.prompt_tokens as usize } else { 0 },
            prompt_width: 6,
            patches_per_image: 9,
            backbone: None,
        }
    }

    fn shapes(config: &ModelConfig) -> BTreeMap<String, Vec<usize>> {
        let model = config.init(1, &Device::flex()).expect("init");
        model
            .collect(None, None, crate::model::SKIP_ENUM_VARIANTS)
            .into_iter()
            .map(|tensor| (tensor.name.clone(), tensor.shape.to_vec()))
            .collect()
    }

    /// The model's tensors whose shapes differ between 3 and 5 labels, each with the one axis on
    /// which they differ; every other tensor has the same shape.
    fn class_dependent(three: &ModelConfig, five: &ModelConfig) -> BTreeMap<String, usize> {
        let (three, five) = (shapes(three), shapes(five));
        assert_eq!(three.keys().collect::<Vec<_>>(), five.keys().collect::<Vec<_>>());
        let mut found = BTreeMap::new();
        for (name, shape) in &three {
            let other = &five[name];
            let differ: Vec<usize> = (0..shape.len()).filter(|&axis| shape[axis] != other[axis]).collect();
            match differ.as_slice() {
                [] => {}
                [axis] => {
                    assert_eq!((shape[*axis], other[*axis]), (3, 5), "{name}: C on axis {axis}");
                    found.insert(name.clone(), *axis);
                }
                axes => panic!("{name} differs on axes {axes:?}"),
            }
        }
        found
    }

    /// Every head: the SSPA head in every variant the ablation switches build, and each peer,
    /// with 3 and with 5 labels: the tensors whose shapes differ are exactly the head's
    /// [`sspa_model::HeadConfig::class_axes`], on those axes.
    #[test]
    fn the_class_axes_are_all_the_class_dependent_tensors() {
        let base = AblationSection::default();
        let uni_d = AblationSection {
            classifier: Classifier::Learned,
            alignment: Alignment::SemanticToVisual,
            ..AblationSection::default()
        };
        let variants = [
            base.clone(),
            uni_d.clone(),
            AblationSection { branches: Branches::Global, ..uni_d.clone() },
            AblationSection { branches: Branches::Regional, ..uni_d },
            AblationSection { cap: false, dsf: false, kap: KapSource::Off, ..base.clone() },
            AblationSection { synthesis: Synthesis::Mlp, aggregator: Aggregator::Hard, ..base.clone() },
            AblationSection { synthesis: Synthesis::Concat, gate: false, alignment: Alignment::None, ..base.clone() },
            AblationSection { synthesis: Synthesis::Sum, alignment: Alignment::VisualToSemantic, ..base.clone() },
            AblationSection { branches: Branches::Global, ..base.clone() },
        ];
        let models = [
            ModelSection { embed_dim: 16, prompt_tokens: 2, ..ModelSection::default() },
            ModelSection {
                embed_dim: 16,
                prompt_tokens: 2,
                image_projection: ImageProjectionKind::None,
                ..ModelSection::default()
            },
        ];
        let mut seen = BTreeMap::new();
        for model in &models {
            for ablation in &variants {
                let (three, five) = (config(model, ablation, 3), config(model, ablation, 5));
                let expected = class_axes(five.head.class_axes().expect("SSPA heads remap"));
                let found = class_dependent(&three, &five);
                assert!(found.iter().all(|(name, axis)| expected.get(name) == Some(axis)), "{found:?} {ablation:?}");
                seen.extend(found);
            }
            for kind in [HeadKind::Linear, HeadKind::Mlp, HeadKind::QueryDecoder] {
                let peer = |classes| {
                    let mut config = config(model, &base, classes);
                    config.head = HeadConfig::from_sections(kind, model, &base, Some(12), 20, classes).expect("peer");
                    config
                };
                let (three, five) = (peer(3), peer(5));
                let expected = class_axes(five.head.class_axes().expect("one query per class"));
                assert_eq!(class_dependent(&three, &five), expected, "{kind}");
            }
        }
        assert_eq!(seen, class_axes(config(&models[0], &base, 5).head.class_axes().expect("SSPA")), "W was built");
    }

    /// A query decoder whose queries score groups of classes cannot remap them by label: the
    /// same label set warm-starts, another is refused naming `train.init`.
    #[test]
    fn grouped_query_decoders_warm_start_onto_the_same_labels_only() {
        let model = ModelSection { embed_dim: 16, prompt_tokens: 2, ..ModelSection::default() };
        let grouped = |classes| {
            let mut config = config(&model, &AblationSection::default(), classes);
            let head = sspa_model::QueryDecoderConfig::new(20, classes, 16).with_max_queries(2);
            config.head = HeadConfig::QueryDecoder(head);
            assert!(config.head.class_axes().is_none(), "{classes} classes in 2 queries are grouped");
            config
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let old = grouped(5);
        old.save(&dir.path().join(files::CONFIG)).expect("config");
        let device = Device::flex();
        crate::save_weights(&old.init(1, &device).expect("init"), &dir.path().join(files::MODEL)).expect("weights");
        let start = WarmStart::new(dir.path(), Weights::Raw);

        let same = grouped(5);
        let (_, report) = start.apply(same.init(2, &device).expect("init"), &same).expect("same labels");
        assert_eq!(report.tensors_remapped, 0);

        let more = grouped(6);
        let error = start.apply(more.init(2, &device).expect("init"), &more).expect_err("labels changed");
        assert!(matches!(error, TrainError::Option { key: "train.init", .. }), "{error}");
        assert!(error.to_string().contains("train.init = \"scratch\""), "{error}");
    }

    #[test]
    fn labels_map_by_name_first_occurrence_wins() {
        let names = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
        let (old, new) = (names(&["a", "b", "c", "a", "b"]), names(&["c", "x", "a", "y", "x"]));
        let map = LabelMap::new(&old, &new);
        assert_eq!(map.rows, [Some(2), None, Some(0), None, None]);
        assert_eq!(map.shared(), 2);
        assert_eq!(labels_missing_from(&new, &old), ["x", "y"]);
        assert_eq!(labels_missing_from(&old, &new), ["b"]);
    }

    #[test]
    fn mismatches_are_described_with_both_shapes() {
        let mismatch = TensorMismatch { tensor: "head.w".into(), old: vec![4, 16], new: Some(vec![4, 32]) };
        assert_eq!(mismatch.to_string(), "`head.w` is [4, 16] in the old model but [4, 32] in this run");
        let missing = TensorMismatch { tensor: "prompts".into(), old: vec![2, 6], new: None };
        assert_eq!(missing.to_string(), "`prompts` ([2, 6]) of the old model is not in this run's model");
        let error = TrainError::WarmStartArchitecture {
            path: "old/model.safetensors".into(),
            mismatches: vec![mismatch, missing],
        };
        let message = error.to_string();
        assert!(
            message.starts_with("warm start from `old/model.safetensors`: the architecture differs (`head.w`"),
            "{message}"
        );
        assert!(message.ends_with("this run's model); train with `train.init = \"scratch\"`"), "{message}");
        let many =
            (0..10).map(|k| TensorMismatch { tensor: format!("t{k}"), old: vec![k], new: Some(vec![k + 1]) }).collect();
        let message = TrainError::WarmStartArchitecture { path: "m".into(), mismatches: many }.to_string();
        assert!(message.contains("`t5` is [5]") && !message.contains("`t6`"), "{message}");
        assert!(message.contains("; … and 4 more); train with"), "{message}");
    }
}
