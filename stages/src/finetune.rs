//! Training the image encoder with the head (`model.freeze_image_encoder = false`, the paper's
//! recipe; meant for GPUs: every step runs the encoder forward and backward).
//!
//! - [`ShardImages`]: the shard stage's train split as an [`ImageSource`]: the seeded 10 %
//!   validation slice through the evaluation loader, the rest through the training loader
//!   (seeded per-epoch shuffle, random resized crop + flip, `drop_last`).
//! - the preset's pretrained image encoder, trainable on the autodiff training device, comes from
//!   [`sspa_infer::encoders::image_encoder`].
//!
//! Nothing is cached: the evaluate stage and `predict` encode images with the run's own encoder
//! (raw or EMA), read from its `model*.safetensors`.

use sspa_config::ModelSection;
use sspa_dag::StageError;
use sspa_data::{Loader, LoaderConfig, SplitReader};
use sspa_train::{Batches, ImageBatch, ImageSource, TrainError};

/// Images per validation forward pass.
const VALIDATION_BATCH: usize = 32;

/// The shard stage's train split, split into training and validation rows.
pub struct ShardImages {
    train: SplitReader,
    validation: SplitReader,
    train_config: LoaderConfig,
    eval_config: LoaderConfig,
    fingerprint: String,
}

impl ShardImages {
    /// `train_rows` and `validation_rows` index `split`; `shard_key` names the shard output (its
    /// cache key), so the fingerprint changes with the data.
    ///
    /// # Errors
    /// A row outside the split, or an unknown preset.
    pub fn new(
        split: &SplitReader,
        train_rows: &[usize],
        validation_rows: &[usize],
        model: &ModelSection,
        batch_size: usize,
        seed: u64,
        shard_key: &str,
    ) -> Result<Self, StageError> {
        let info = model.preset.info();
        let (mean, std) = (info.mean, info.std);
        let train_config = LoaderConfig::train(batch_size, model.image_size, mean, std, seed);
        let eval_config = LoaderConfig::eval(VALIDATION_BATCH, model.image_size, mean, std);
        let mut hasher = blake3::Hasher::new();
        for rows in [train_rows, validation_rows] {
            hasher.update(&(rows.len() as u64).to_le_bytes());
            for &row in rows {
                hasher.update(&(row as u64).to_le_bytes());
            }
        }
        let fingerprint = format!(
            "shard={shard_key}/rows={}/train={train_config:?}/eval={eval_config:?}",
            hasher.finalize().to_hex()
        );
        Ok(Self {
            train: split.select(train_rows)?,
            validation: split.select(validation_rows)?,
            train_config,
            eval_config,
            fingerprint,
        })
    }
}

/// The loader's batches as the training loop's.
fn batches<'a>(split: &SplitReader, config: &LoaderConfig, epoch: u64) -> Result<Batches<'a>, TrainError> {
    let loader = Loader::new(split, config, epoch).map_err(|e| TrainError::Data { message: e.to_string() })?;
    Ok(Box::new(loader.map(|batch| {
        batch
            .map(|batch| ImageBatch { images: batch.images, shape: batch.shape, targets: batch.targets })
            .map_err(|e| TrainError::Data { message: e.to_string() })
    })))
}

impl ImageSource for ShardImages {
    fn classes(&self) -> usize {
        self.train.label_count
    }

    fn image_size(&self) -> usize {
        self.train_config.image_size as usize
    }

    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn train_batches(&self) -> usize {
        self.train.len() / self.train_config.batch_size
    }

    fn validation_len(&self) -> usize {
        self.validation.len()
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn train_epoch(&self, epoch: u32) -> Result<Batches<'_>, TrainError> {
        batches(&self.train, &self.train_config, u64::from(epoch))
    }

    fn validation(&self) -> Result<Batches<'_>, TrainError> {
        batches(&self.validation, &self.eval_config, 0)
    }
}
