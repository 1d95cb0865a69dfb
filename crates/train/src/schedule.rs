//! Learning rate: linear warm-up, then cosine decay to zero (SSPA.md, training recipe).

use sspa_config::TrainSection;

/// `lr(t)`: `base · (t + 1) / warmup` for the first `warmup` steps, then
/// `base · (1 + cos(π · (t − warmup) / (total − warmup))) / 2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
    /// All steps of the run (warm-up included).
    pub total_steps: usize,
}

impl WarmupCosine {
    /// The schedule of `[train]` (`lr`, `epochs`, `warmup_epochs`) for `steps_per_epoch`.
    pub fn from_section(train: &TrainSection, steps_per_epoch: usize) -> Self {
        let total_steps = train.epochs as usize * steps_per_epoch;
        let warmup = (train.warmup_epochs.max(0.0) * steps_per_epoch as f64).round() as usize;
        Self { base_lr: train.lr, warmup_steps: warmup.min(total_steps), total_steps }
    }

    /// Learning rate of step `step` (0-based); steps past the end get 0.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps);
        if decay_steps == 0 || step >= self.total_steps {
            return 0.0;
        }
        let progress = (step - self.warmup_steps) as f64 / decay_steps as f64;
        0.5 * self.base_lr * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warm_up_then_cosine_to_zero() {
        let train = TrainSection { lr: 1e-3, epochs: 10, warmup_epochs: 1.0, ..TrainSection::default() };
        let schedule = WarmupCosine::from_section(&train, 4);
        assert_eq!((schedule.warmup_steps, schedule.total_steps), (4, 40));
        assert!((schedule.lr(0) - 0.25e-3).abs() < 1e-15);
        assert!((schedule.lr(3) - 1e-3).abs() < 1e-15);
        assert!((schedule.lr(4) - 1e-3).abs() < 1e-15, "cosine starts at the peak");
        assert!((schedule.lr(22) - 0.5e-3).abs() < 1e-12, "half-way down at the middle");
        assert!(schedule.lr(39) > 0.0 && schedule.lr(39) < 1e-5);
        assert_eq!(schedule.lr(40), 0.0);
        let decreasing = (4..40).map(|s| schedule.lr(s)).collect::<Vec<_>>();
        assert!(decreasing.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn no_warm_up() {
        let schedule = WarmupCosine { base_lr: 2.0, warmup_steps: 0, total_steps: 2 };
        assert_eq!(schedule.lr(0), 2.0);
        assert!((schedule.lr(1) - 1.0).abs() < 1e-12);
    }
}
