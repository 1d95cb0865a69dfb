//! Loading OpenAI / OpenCLIP ModifiedResNet weights.
//!
//! # Weight key mapping (`prefix` is `visual.` in a full CLIP state dict)
//!
//! | checkpoint key | field | note |
//! |---|---|---|
//! | `conv{1,2,3}.weight`, `bn{1,2,3}.*` | `stem.conv{1,2,3}` | BN folded |
//! | `layer{s}.{j}.conv{1,2,3}.weight`, `layer{s}.{j}.bn{1,2,3}.*` | `layer{s}[j].conv{1,2,3}` | BN folded |
//! | `layer{s}.{j}.downsample.0.weight`, `layer{s}.{j}.downsample.1.*` | `layer{s}[j].downsample` | first block of a stage only, BN folded |
//! | `attnpool.positional_embedding` `[g²+1, 32·width]` | `attnpool.positional_embedding` | |
//! | `attnpool.{q,k,v,c}_proj.{weight,bias}` | `attnpool.{q,k,v,c}_proj` | weights transposed |
//!
//! `*` is `weight`, `bias`, `running_mean`, `running_var`; every `num_batches_tracked` is ignored.

use burn::prelude::*;
use sspa_encoders::weights::Checkpoint;

use super::error::ResnetError;
use super::model::{ModifiedResNet, ModifiedResNetConfig};

/// Takes every tensor of a ModifiedResNet under `prefix` from `checkpoint` (see the key table).
///
/// Missing or mis-shaped tensors are recorded in the checkpoint, not returned here: the caller
/// loads the other parts of the file (text tower, projections) and then calls
/// [`Checkpoint::finish`], which lists every problem of the file at once. Only an invalid
/// `config` fails here.
pub fn load_openai(
    checkpoint: &mut Checkpoint,
    prefix: &str,
    config: &ModifiedResNetConfig,
    device: &Device,
) -> Result<ModifiedResNet, ResnetError> {
    config.validate()?;
    let stem = config.stem().load(checkpoint, prefix, device);
    let [layer1, layer2, layer3, layer4] = config.stages();
    let mut stage = |index: usize, blocks: Vec<_>| -> Vec<_> {
        blocks
            .iter()
            .enumerate()
            .map(|(block, config): (usize, &super::bottleneck::BottleneckConfig)| {
                config.load(checkpoint, &format!("{prefix}layer{index}.{block}."), device)
            })
            .collect()
    };
    let layer1 = stage(1, layer1);
    let layer2 = stage(2, layer2);
    let layer3 = stage(3, layer3);
    let layer4 = stage(4, layer4);
    let attnpool = config.attnpool().load(checkpoint, &format!("{prefix}attnpool."), device);
    Ok(ModifiedResNet { stem, layer1, layer2, layer3, layer4, attnpool })
}

/// Loads a safetensors file that holds only a ModifiedResNet under `prefix` (every other key is
/// an error), and fails with one error listing every missing, unexpected or mis-shaped tensor.
/// The parameters do not require gradients.
pub fn load_file(
    path: &std::path::Path,
    prefix: &str,
    config: &ModifiedResNetConfig,
    device: &Device,
) -> Result<ModifiedResNet, ResnetError> {
    let mut checkpoint = Checkpoint::open(path, "CLIP ModifiedResNet")?;
    let model = load_openai(&mut checkpoint, prefix, config, device)?;
    checkpoint.finish()?;
    Ok(model.set_require_grad(false))
}
