//! `maps.json`: the attention and gate maps the evaluate stage takes from a few test images, and
//! the deterministic choice of those images.
//!
//! The evaluate stage writes a [`MapsFile`]; the report stage reads it, takes the images' pixels
//! from the shards and draws them with [`crate::heatmap`].

use serde::{Deserialize, Serialize};

/// Bump when the meaning of a field changes.
pub const MAPS_VERSION: u32 = 1;
/// File name in the evaluate stage's output.
pub const MAPS_FILE: &str = "maps.json";

/// Everything the report needs to draw the maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapsFile {
    /// [`MAPS_VERSION`].
    pub version: u32,
    /// The weights the maps come from (`raw`).
    pub model: String,
    /// The shard split the images are in (`evaluate.split`).
    pub split: String,
    /// Patch grid rows (`h`) and columns (`w`), `N = h · w`, row-major.
    pub grid: [usize; 2],
    /// How the images were chosen, in words.
    pub selection: String,
    /// Why there are no maps (the head has no aggregator or gate, say), when `images` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub images: Vec<ImageMaps>,
}

/// The maps of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMaps {
    /// Image id (its path in the dataset, as in `scores.parquet`).
    pub image: String,
    /// Row of the image in the shard split's index.
    pub row: usize,
    /// One attention map per shown label, highest score first.
    pub labels: Vec<LabelMap>,
    /// S→V patch gate magnitude: the gate values `[N, d]` averaged over `d`, `[N]`; `None` when
    /// the head has no semantic-to-visual gate.
    pub gate: Option<Vec<f32>>,
}

/// The soft aggregator's patch weights for one label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelMap {
    pub label: String,
    /// Probability of the label for this image.
    pub score: f32,
    /// Target: 1, 0, or −1 (ignored).
    pub target: i8,
    /// `w_i` over the `N` patches (they sum to 1 for the soft aggregator), `[N]`; `None` when the
    /// head has no aggregator (global branch only).
    pub weights: Option<Vec<f32>>,
}

/// One chosen image and the classes to show for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Row in the score matrix.
    pub image: usize,
    /// Class indices, the class the image was chosen for first, then the image's other
    /// highest-scoring classes.
    pub classes: Vec<usize>,
}

/// How [`choose_images`] picks, for `maps.json`.
pub const SELECTION: &str = "true positives by score, highest first: each on a new image and, while possible, of a \
                             class not shown yet; per image the class it was chosen for, then its other \
                             highest-scoring classes";

/// Picks up to `count` images and up to `labels_per_image` classes each from `scores` and
/// `targets` (`[n, C]` row-major). Every true positive `(image, class)` with a finite score is
/// a candidate; candidates go by score, highest first (ties: lower class, then lower row). A
/// first pass takes a candidate when neither its image nor its class was taken, a second one
/// fills the remaining places with new images of any class. Deterministic.
pub fn choose_images(
    scores: &[f32],
    targets: &[i8],
    classes: usize,
    count: usize,
    labels_per_image: usize,
) -> Vec<Chosen> {
    if classes == 0 || scores.len() != targets.len() {
        return Vec::new();
    }
    let images = scores.len() / classes;
    let at = |image: usize, class: usize| scores[image * classes + class];
    let mut candidates: Vec<(usize, usize)> = (0..images)
        .flat_map(|image| (0..classes).map(move |class| (image, class)))
        .filter(|&(image, class)| targets[image * classes + class] == 1 && at(image, class).is_finite())
        .collect();
    candidates.sort_by(|&(ia, ca), &(ib, cb)| at(ib, cb).total_cmp(&at(ia, ca)).then(ca.cmp(&cb)).then(ia.cmp(&ib)));
    let mut picked: Vec<(usize, usize)> = Vec::new();
    for distinct_classes in [true, false] {
        for &(image, class) in &candidates {
            if picked.len() == count {
                break;
            }
            let image_taken = picked.iter().any(|&(other, _)| other == image);
            let class_taken = picked.iter().any(|&(_, other)| other == class);
            if !(image_taken || distinct_classes && class_taken) {
                picked.push((image, class));
            }
        }
    }
    picked
        .into_iter()
        .map(|(image, class)| {
            let mut others: Vec<usize> = (0..classes).filter(|&other| other != class).collect();
            others.sort_by(|&a, &b| at(image, b).total_cmp(&at(image, a)).then(a.cmp(&b)));
            let mut shown = vec![class];
            shown.extend(others.into_iter().take(labels_per_image.saturating_sub(1)));
            Chosen { image, classes: shown }
        })
        .collect()
}

/// The square grid side of `N` patches (`h = w = √N`), when `N` is a perfect square.
pub fn square_grid(patches: usize) -> Option<[usize; 2]> {
    let side = (patches as f64).sqrt().round() as usize;
    (side > 0 && side * side == patches).then_some([side, side])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_top_true_positives_of_distinct_images() {
        #[rustfmt::skip]
        let scores = [
            0.9, 0.8, 0.1,  // image 0: best TP for class 0 and 1
            0.5, 0.3, 0.7,  // image 1: best TP for class 2
            0.95, 0.2, 0.1, // image 2: highest class-0 score, but not a positive
            0.4, 0.6, 0.6,  // image 3: second-best class-1 positive
        ];
        #[rustfmt::skip]
        let targets = [
            1, 1, 0,
            0, 0, 1,
            0, 0, 0,
            0, 1, -1,
        ];
        let chosen = choose_images(&scores, &targets, 3, 4, 2);
        // True positives by score: (0, c0) 0.9, (0, c1) 0.8, (1, c2) 0.7, (3, c1) 0.6. Image 0 is
        // taken for class 0, so (0, c1) is skipped; image 2 has no positive.
        assert_eq!(
            chosen,
            vec![
                Chosen { image: 0, classes: vec![0, 1] },
                Chosen { image: 1, classes: vec![2, 0] },
                Chosen { image: 3, classes: vec![1, 2] },
            ]
        );
        assert_eq!(choose_images(&scores, &targets, 3, 1, 3), vec![Chosen { image: 0, classes: vec![0, 1, 2] }]);
        // With one class shown per image, the second pass repeats classes: two images, both class 0.
        let single = choose_images(&[0.9, 0.8, 0.7], &[1, 1, 1], 1, 2, 3);
        assert_eq!(single, vec![Chosen { image: 0, classes: vec![0] }, Chosen { image: 1, classes: vec![0] }]);
        assert!(choose_images(&scores, &[0; 12], 3, 4, 2).is_empty());
    }

    #[test]
    fn ties_go_to_the_lower_row_and_class() {
        let scores = [0.5, 0.5, 0.5, 0.5];
        let targets = [1, 1, 1, 1];
        assert_eq!(
            choose_images(&scores, &targets, 2, 4, 2),
            vec![Chosen { image: 0, classes: vec![0, 1] }, Chosen { image: 1, classes: vec![1, 0] },]
        );
    }

    #[test]
    fn square_grids() {
        assert_eq!(square_grid(49), Some([7, 7]));
        assert_eq!(square_grid(16), Some([4, 4]));
        assert_eq!(square_grid(12), None);
        assert_eq!(square_grid(0), None);
    }

    #[test]
    fn maps_file_round_trips() {
        let file = MapsFile {
            version: MAPS_VERSION,
            model: "raw".into(),
            split: "test".into(),
            grid: [1, 2],
            selection: SELECTION.into(),
            note: None,
            images: vec![ImageMaps {
                image: "a.png".into(),
                row: 3,
                labels: vec![LabelMap { label: "cat".into(), score: 0.5, target: 1, weights: Some(vec![0.25, 0.75]) }],
                gate: None,
            }],
        };
        let text = serde_json::to_string(&file).expect("json");
        assert_eq!(serde_json::from_str::<MapsFile>(&text).expect("parse"), file);
    }
}
