//! [`Loader`] streams normalised `f32` NCHW batches of a [`SplitReader`] with a pool of
//! prefetch threads; [`Loader::tensors`] / [`Batch::into_tensors`] turn them into burn tensors
//! ([`crate::TensorBatch`]).
//!
//! Order within an epoch: the split's shards are shuffled, then taken `shuffle_window` at a time;
//! the images of those shards are shuffled together. Reads therefore stay within a few shard
//! files at a time (page-cache friendly) while every epoch sees a different order. Everything
//! random (order, crops, flips) derives from `(seed, epoch, image row)`, so a batch's content
//! does not depend on which thread made it.

use crate::error::DataError;
pub use crate::reader::{Record, ShardSet, SplitReader, open_shards};
use sspa_rng::SplitMix64;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

/// Random-resized-crop and flip settings (torchvision's `RandomResizedCrop` defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Range of the crop's area as a fraction of the image.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height).
    pub ratio: (f32, f32),
    pub flip_probability: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Self { scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), flip_probability: 0.5 }
    }
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Square side of the batch images.
    pub image_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub shuffle: bool,
    /// Shards whose images are shuffled together.
    pub shuffle_window: usize,
    /// `None`: centre square crop, resized to `image_size` (a no-op for evaluation shards).
    pub augment: Option<Augment>,
    pub seed: u64,
    /// Threads building batches.
    pub workers: usize,
    /// Batches built ahead of the consumer at most.
    pub prefetch: usize,
    pub drop_last: bool,
}

impl LoaderConfig {
    /// Evaluation defaults: ordered, no augmentation.
    pub fn eval(batch_size: usize, image_size: u32, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            batch_size,
            image_size,
            mean,
            std,
            shuffle: false,
            shuffle_window: 4,
            augment: None,
            seed: 0,
            workers: 2,
            prefetch: 4,
            drop_last: false,
        }
    }

    /// Training defaults: shuffled, random resized crop and flip.
    pub fn train(batch_size: usize, image_size: u32, mean: [f32; 3], std: [f32; 3], seed: u64) -> Self {
        Self {
            shuffle: true,
            augment: Some(Augment::default()),
            seed,
            drop_last: true,
            ..Self::eval(batch_size, image_size, mean, std)
        }
    }

    fn check(&self) -> Result<(), DataError> {
        let fail = |key: &str, message: &str| Err(DataError::Loader { key: key.into(), message: message.into() });
        if self.batch_size == 0 {
            return fail("batch_size", "must be positive");
        }
        if self.image_size == 0 {
            return fail("image_size", "must be positive");
        }
        if self.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            return fail("std", "must be positive");
        }
        if let Some(a) = &self.augment
            && !(0.0 < a.scale.0
                && a.scale.0 <= a.scale.1
                && a.scale.1 <= 1.0
                && 0.0 < a.ratio.0
                && a.ratio.0 <= a.ratio.1)
        {
            return fail("augment", "needs 0 < scale.0 ≤ scale.1 ≤ 1 and 0 < ratio.0 ≤ ratio.1");
        }
        Ok(())
    }
}

/// A batch: `images` is `[N, 3, S, S]` row-major (`shape`), `targets` is `[N, C]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub shape: [usize; 4],
    pub targets: Vec<i8>,
    pub label_count: usize,
    /// Index rows of the images, in batch order.
    pub rows: Vec<usize>,
}

/// The row order of an epoch (see the module docs).
pub fn epoch_order(split: &SplitReader, config: &LoaderConfig, epoch: u64) -> Vec<usize> {
    let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); split.shard_count];
    for (row, record) in split.records().iter().enumerate() {
        if let Some(rows) = by_shard.get_mut(record.shard as usize) {
            rows.push(row);
        }
    }
    if !config.shuffle {
        return by_shard.concat();
    }
    let mut rng = SplitMix64::for_item(config.seed, 0x0D0E_0F00, epoch);
    rng.shuffle(&mut by_shard);
    let mut order = Vec::with_capacity(split.len());
    for window in by_shard.chunks(config.shuffle_window.max(1)) {
        let mut rows = window.concat();
        rng.shuffle(&mut rows);
        order.extend(rows);
    }
    order
}

struct Shared {
    split: SplitReader,
    config: LoaderConfig,
    epoch: u64,
    batches: Vec<Vec<usize>>,
    next: AtomicUsize,
    /// Batches handed to the consumer so far.
    consumed: Mutex<usize>,
    wake: Condvar,
    stop: AtomicBool,
}

/// An epoch's batches, in order, built ahead by worker threads. Dropping it stops the workers.
pub struct Loader {
    shared: Arc<Shared>,
    receiver: Option<mpsc::Receiver<(usize, Result<Batch, DataError>)>>,
    pending: BTreeMap<usize, Result<Batch, DataError>>,
    next_out: usize,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Loader {
    /// Starts the workers for `epoch` of `split`.
    pub fn new(split: &SplitReader, config: &LoaderConfig, epoch: u64) -> Result<Self, DataError> {
        config.check()?;
        let order = epoch_order(split, config, epoch);
        let mut batches: Vec<Vec<usize>> = order.chunks(config.batch_size).map(<[usize]>::to_vec).collect();
        if config.drop_last && batches.last().is_some_and(|b| b.len() < config.batch_size) {
            batches.pop();
        }
        let shared = Arc::new(Shared {
            split: split.clone(),
            config: config.clone(),
            epoch,
            batches,
            next: AtomicUsize::new(0),
            consumed: Mutex::new(0),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (sender, receiver) = mpsc::channel();
        let workers = (0..config.workers.max(1))
            .map(|_| {
                let shared = Arc::clone(&shared);
                let sender = sender.clone();
                std::thread::spawn(move || worker(&shared, &sender))
            })
            .collect();
        Ok(Self { shared, receiver: Some(receiver), pending: BTreeMap::new(), next_out: 0, workers })
    }

    /// Batches in this epoch.
    pub fn len(&self) -> usize {
        self.shared.batches.len()
    }
    pub fn is_empty(&self) -> bool {
        self.shared.batches.is_empty()
    }
}

fn worker(shared: &Shared, sender: &mpsc::Sender<(usize, Result<Batch, DataError>)>) {
    loop {
        let index = shared.next.fetch_add(1, Ordering::SeqCst);
        let Some(rows) = shared.batches.get(index) else { return };
        {
            let Ok(mut consumed) = shared.consumed.lock() else { return };
            while index >= *consumed + shared.config.prefetch.max(1) && !shared.stop.load(Ordering::SeqCst) {
                consumed = match shared.wake.wait(consumed) {
                    Ok(guard) => guard,
                    Err(_) => return,
                };
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let batch = build_batch(&shared.split, &shared.config, shared.epoch, rows);
        if sender.send((index, batch)).is_err() {
            return;
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_out >= self.shared.batches.len() {
            return None;
        }
        let receiver = self.receiver.as_ref()?;
        while !self.pending.contains_key(&self.next_out) {
            match receiver.recv() {
                Ok((index, batch)) => {
                    self.pending.insert(index, batch);
                }
                Err(_) => return None,
            }
        }
        let batch = self.pending.remove(&self.next_out)?;
        self.next_out += 1;
        if let Ok(mut consumed) = self.shared.consumed.lock() {
            *consumed = self.next_out;
        }
        self.shared.wake.notify_all();
        Some(batch)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        self.receiver.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Builds one batch (also usable without the thread pool).
pub fn build_batch(split: &SplitReader, config: &LoaderConfig, epoch: u64, rows: &[usize]) -> Result<Batch, DataError> {
    let size = config.image_size as usize;
    let plane = size * size;
    let mut images = vec![0f32; rows.len() * 3 * plane];
    let mut targets = Vec::with_capacity(rows.len() * split.label_count);
    for (slot, &row) in rows.iter().enumerate() {
        let record = split.records().get(row).ok_or_else(|| DataError::Loader {
            key: "rows".into(),
            message: format!("row `{row}` is out of range ({} images)", split.len()),
        })?;
        let pixels = split.read_pixels(row)?;
        let mut rng = SplitMix64::for_item(config.seed ^ epoch.wrapping_mul(0x9E37_79B9), 0xA0C0, row as u64);
        let (w, h) = (record.width as f32, record.height as f32);
        let (crop, flip) = match &config.augment {
            Some(augment) => {
                (random_resized_crop(&mut rng, w, h, augment), rng.unit() < f64::from(augment.flip_probability))
            }
            None => (centre_square(w, h), false),
        };
        let out = &mut images[slot * 3 * plane..(slot + 1) * 3 * plane];
        sample(&pixels, record.width as usize, record.height as usize, crop, flip, size, config, out);
        targets.extend_from_slice(&record.targets);
    }
    Ok(Batch {
        images,
        shape: [rows.len(), 3, size, size],
        targets,
        label_count: split.label_count,
        rows: rows.to_vec(),
    })
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries, then a centre crop with the ratio
/// clamped. Returns `(left, top, width, height)` in pixels.
fn random_resized_crop(rng: &mut SplitMix64, w: f32, h: f32, augment: &Augment) -> (f32, f32, f32, f32) {
    let area = w * h;
    let (log_lo, log_hi) = (augment.ratio.0.ln(), augment.ratio.1.ln());
    for _ in 0..10 {
        let target = area * (augment.scale.0 + (augment.scale.1 - augment.scale.0) * rng.unit() as f32);
        let ratio = (log_lo + (log_hi - log_lo) * rng.unit() as f32).exp();
        let cw = (target * ratio).sqrt().round();
        let ch = (target / ratio).sqrt().round();
        if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
            let left = (rng.unit() as f32 * (w - cw + 1.0)).floor();
            let top = (rng.unit() as f32 * (h - ch + 1.0)).floor();
            return (left, top, cw, ch);
        }
    }
    let ratio = w / h;
    let (cw, ch) = if ratio < augment.ratio.0 {
        (w, (w / augment.ratio.0).round())
    } else if ratio > augment.ratio.1 {
        ((h * augment.ratio.1).round(), h)
    } else {
        (w, h)
    };
    ((w - cw) / 2.0, (h - ch) / 2.0, cw, ch)
}

/// The values the evaluation loader (`config.augment = None`) produces for one image already
/// fitted by the shard stage's policy (`preprocess::fit(.., train = false)`): centre square,
/// bilinear to `config.image_size`, normalised. For images that never went through a shard
/// (`sspa-pipe predict`), so they are prepared exactly as test images are.
///
/// # Shapes
/// - output: `[3, S, S]` row-major, `S = config.image_size`
pub fn eval_values(image: &crate::preprocess::RgbPixels, config: &LoaderConfig) -> Vec<f32> {
    let size = config.image_size as usize;
    let mut out = vec![0f32; 3 * size * size];
    let crop = centre_square(image.width as f32, image.height as f32);
    sample(&image.pixels, image.width as usize, image.height as usize, crop, false, size, config, &mut out);
    out
}

/// The largest centred square `(left, top, width, height)` of a `w × h` image.
fn centre_square(w: f32, h: f32) -> (f32, f32, f32, f32) {
    let side = w.min(h);
    ((w - side) / 2.0, (h - side) / 2.0, side, side)
}

/// Bilinear sampling of `crop` into an `size²` CHW block, normalised, optionally mirrored.
#[allow(clippy::too_many_arguments)]
fn sample(
    pixels: &[u8],
    width: usize,
    height: usize,
    crop: (f32, f32, f32, f32),
    flip: bool,
    size: usize,
    config: &LoaderConfig,
    out: &mut [f32],
) {
    let plane = size * size;
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * config.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| config.mean[c] / config.std[c]);
    let exact = crop == (0.0, 0.0, size as f32, size as f32) && width == size && height == size;
    // Per output column: the two source columns and the weight of the second.
    let columns: Vec<(usize, usize, f32)> = (0..size)
        .map(|x| {
            let x = if flip { size - 1 - x } else { x };
            axis(crop.0, crop.2, x, size, width, exact)
        })
        .collect();
    for y in 0..size {
        let (y0, y1, wy) = axis(crop.1, crop.3, y, size, height, exact);
        let (row0, row1) =
            (&pixels[y0 * width * 3..(y0 + 1) * width * 3], &pixels[y1 * width * 3..(y1 + 1) * width * 3]);
        for (x, &(x0, x1, wx)) in columns.iter().enumerate() {
            for c in 0..3 {
                let top = f32::from(row0[x0 * 3 + c]) * (1.0 - wx) + f32::from(row0[x1 * 3 + c]) * wx;
                let bottom = f32::from(row1[x0 * 3 + c]) * (1.0 - wx) + f32::from(row1[x1 * 3 + c]) * wx;
                let value = top * (1.0 - wy) + bottom * wy;
                out[c * plane + y * size + x] = value * scale[c] - shift[c];
            }
        }
    }
}

fn axis(start: f32, length: f32, index: usize, size: usize, limit: usize, exact: bool) -> (usize, usize, f32) {
    if exact {
        return (index, index, 0.0);
    }
    let position = start + (index as f32 + 0.5) * length / size as f32 - 0.5;
    let position = position.clamp(0.0, (limit - 1) as f32);
    let low = position.floor() as usize;
    let high = (low + 1).min(limit - 1);
    (low, high, position - low as f32)
}
