//! The `scenes` layout of the offline demo (`[demo] layout = "scenes"`): Fashion-MNIST items of
//! very different sizes anywhere in the frame, overlapping, over faint clutter — where *where*
//! matters, unlike the 2×2 mosaics whose every item fills a fixed quarter.
//!
//! A scene is a square canvas of `image_size` px (default 112) holding 1–5 items:
//! - each item is one Fashion-MNIST image resized (bilinear, antialiased when shrinking) to a
//!   random side between `image_size / 6` and `0.45 · image_size` (19–50 px at 112), placed at a
//!   random position wholly inside the canvas;
//! - items may overlap and are max-blended (the brighter pixel wins, as objects in front and
//!   behind both stay partly visible); to keep every annotated item visible, an item is placed
//!   only where at most half of its box and at most half of every earlier item's box end up
//!   covered by other items' boxes (up to [`PLACEMENT_TRIES`] random positions; an item that
//!   fits nowhere is left out, and so is its label);
//! - the background is faint clutter: uniform pixel noise up to [`NOISE_MAX`] and 2–6 random
//!   strokes (quadratic Bézier curves, 1–2 px wide, grey 40–90 of 255), drawn under the items.
//!
//! The labels are the classes of the items placed. Scene `i` of a split depends only on
//! `(seed, split, i)`: its plan is drawn from its own [`SplitMix64`] stream and its clutter from
//! a seed drawn from that stream.

use crate::demo::{IdxImages, TILE};
use crate::manifest::DemoSection;
use image::GrayImage;
use image::imageops::{FilterType, resize};
use sspa_rng::{SplitMix64, stream_id};

/// Canvas side when `[demo] image_size` is not given.
pub const DEFAULT_SCENE_SIZE: u32 = 112;

/// Fewest and most items a scene draws (before items that fit nowhere are left out).
pub const ITEMS: std::ops::RangeInclusive<u32> = 1..=5;

/// Random positions tried per item before it is left out.
pub const PLACEMENT_TRIES: u32 = 20;

/// Largest fraction of an item's box that other items' boxes may cover.
pub const MAX_COVERED: f64 = 0.5;

/// Largest grey value of the background noise (of 255).
pub const NOISE_MAX: u8 = 24;

/// One item of a scene: which source image, its side and its top-left corner, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SceneItem {
    /// Index into the split's Fashion-MNIST images.
    pub source: usize,
    /// Side of the resized item.
    pub size: u32,
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
}

/// Everything needed to render one scene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenePlan {
    /// Canvas side.
    pub side: u32,
    /// The items, in drawing order (at least one).
    pub items: Vec<SceneItem>,
    /// Seed of the background clutter.
    pub clutter_seed: u64,
}

/// Side range of an item on a canvas of `side` px: `round(side / 6) ..= floor(0.45 · side)`.
pub fn item_sizes(side: u32) -> std::ops::RangeInclusive<u32> {
    let smallest = (f64::from(side) / 6.0).round() as u32;
    let largest = (f64::from(side) * 0.45).floor() as u32;
    smallest.max(1)..=largest.max(smallest.max(1))
}

/// The canvas side of `demo`.
pub fn scene_side(demo: &DemoSection) -> u32 {
    demo.image_size.unwrap_or(DEFAULT_SCENE_SIZE)
}

/// The plan of scene `index` of `split`: deterministic in `(seed, split, index)`.
pub fn plan(demo: &DemoSection, split: &str, index: u64, source_len: usize) -> ScenePlan {
    let side = scene_side(demo);
    let mut rng = SplitMix64::for_item(demo.seed, stream_id(&format!("scenes:{split}")), index);
    let wanted = ITEMS.start() + rng.below(u64::from(ITEMS.end() - ITEMS.start() + 1)) as u32;
    let sizes = item_sizes(side);
    let mut items: Vec<SceneItem> = Vec::new();
    for _ in 0..wanted {
        let source = rng.below(source_len as u64) as usize;
        let size = sizes.start() + rng.below(u64::from(sizes.end() - sizes.start() + 1)) as u32;
        let room = u64::from(side - size + 1);
        for _ in 0..PLACEMENT_TRIES {
            let candidate = SceneItem { source, size, x: rng.below(room) as u32, y: rng.below(room) as u32 };
            if items.is_empty() || stays_visible(&items, candidate, side) {
                items.push(candidate);
                break;
            }
        }
    }
    ScenePlan { side, items, clutter_seed: rng.next_u64() }
}

/// Whether adding `candidate` leaves at most [`MAX_COVERED`] of every box (its own included)
/// covered by the union of the other boxes ([`covered_fraction`], counted on a grid: a pixel of a
/// box is covered by others exactly when two or more boxes hold it).
fn stays_visible(items: &[SceneItem], candidate: SceneItem, side: u32) -> bool {
    let side = side as usize;
    let mut counts = vec![0u8; side * side];
    let all: Vec<SceneItem> = items.iter().copied().chain([candidate]).collect();
    let pixels = |item: SceneItem| {
        let (x, y, size) = (item.x as usize, item.y as usize, item.size as usize);
        (y..y + size).flat_map(move |row| (x..x + size).map(move |column| row * side + column))
    };
    for &item in &all {
        for pixel in pixels(item) {
            counts[pixel] += 1;
        }
    }
    all.iter().all(|&item| {
        let covered = pixels(item).filter(|&pixel| counts[pixel] >= 2).count();
        covered as f64 <= MAX_COVERED * f64::from(item.size * item.size)
    })
}

/// Fraction of item `which`'s box covered by the union of the other items' boxes.
pub fn covered_fraction(items: &[SceneItem], which: usize) -> f64 {
    let item = items[which];
    let mut covered = 0u32;
    for y in item.y..item.y + item.size {
        for x in item.x..item.x + item.size {
            let inside = |other: &SceneItem| {
                (other.x..other.x + other.size).contains(&x) && (other.y..other.y + other.size).contains(&y)
            };
            if items.iter().enumerate().any(|(index, other)| index != which && inside(other)) {
                covered += 1;
            }
        }
    }
    f64::from(covered) / f64::from(item.size * item.size)
}

/// Renders a plan: clutter first, then every item max-blended over it.
pub fn render(plan: &ScenePlan, source: &IdxImages) -> GrayImage {
    let mut canvas = clutter(plan.side, plan.clutter_seed);
    for item in &plan.items {
        let tile = GrayImage::from_raw(TILE as u32, TILE as u32, source.image(item.source).to_vec())
            .expect("a Fashion-MNIST image is 28×28 bytes");
        let resized =
            if item.size == TILE as u32 { tile } else { resize(&tile, item.size, item.size, FilterType::Triangle) };
        for (x, y, pixel) in resized.enumerate_pixels() {
            let target = canvas.get_pixel_mut(item.x + x, item.y + y);
            target.0[0] = target.0[0].max(pixel.0[0]);
        }
    }
    canvas
}

/// Class indices of a plan's items (with repeats, in drawing order).
pub fn classes(plan: &ScenePlan, source: &IdxImages) -> Vec<usize> {
    plan.items.iter().map(|item| usize::from(source.labels[item.source])).collect()
}

/// The faint background: uniform noise in `0..=NOISE_MAX` and 2–6 strokes.
fn clutter(side: u32, seed: u64) -> GrayImage {
    let mut rng = SplitMix64::new(seed);
    let mut canvas = GrayImage::new(side, side);
    for pixel in canvas.pixels_mut() {
        pixel.0[0] = rng.below(u64::from(NOISE_MAX) + 1) as u8;
    }
    let strokes = 2 + rng.below(5);
    let side_f = f64::from(side);
    for _ in 0..strokes {
        let start = (rng.unit() * side_f, rng.unit() * side_f);
        let length = side_f * (0.125 + 0.375 * rng.unit());
        let angle = rng.unit() * std::f64::consts::TAU;
        let end = (start.0 + length * angle.cos(), start.1 + length * angle.sin());
        // The control point bends the stroke sideways by up to half its length.
        let bend = length * (rng.unit() - 0.5);
        let middle = ((start.0 + end.0) / 2.0, (start.1 + end.1) / 2.0);
        let control = (middle.0 - bend * angle.sin(), middle.1 + bend * angle.cos());
        let grey = 40 + rng.below(51) as u8;
        let radius = if rng.below(2) == 0 { 0.5 } else { 1.0 };
        let steps = (2.0 * length).ceil() as u32;
        for step in 0..=steps {
            let t = f64::from(step) / f64::from(steps);
            let point = (
                (1.0 - t) * (1.0 - t) * start.0 + 2.0 * (1.0 - t) * t * control.0 + t * t * end.0,
                (1.0 - t) * (1.0 - t) * start.1 + 2.0 * (1.0 - t) * t * control.1 + t * t * end.1,
            );
            dab(&mut canvas, point, radius, grey);
        }
    }
    canvas
}

/// Max-blends a disc of `radius` px (at least the pixel under `centre`) into the canvas.
fn dab(canvas: &mut GrayImage, centre: (f64, f64), radius: f64, grey: u8) {
    let side = i64::from(canvas.width());
    let (cx, cy) = (centre.0.floor() as i64, centre.1.floor() as i64);
    let reach = radius.ceil() as i64;
    for y in cy - reach..=cy + reach {
        for x in cx - reach..=cx + reach {
            let (dx, dy) = (x as f64 + 0.5 - centre.0, y as f64 + 0.5 - centre.1);
            let on = (x == cx && y == cy) || dx * dx + dy * dy <= radius * radius;
            if on && (0..side).contains(&x) && (0..side).contains(&y) {
                let pixel = canvas.get_pixel_mut(x as u32, y as u32);
                pixel.0[0] = pixel.0[0].max(grey);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(count: usize) -> IdxImages {
        let mut pixels = vec![0u8; count * TILE * TILE];
        for (index, chunk) in pixels.chunks_mut(TILE * TILE).enumerate() {
            // A bright square inside a dark margin, like a Fashion-MNIST item.
            for y in 4..24 {
                for x in 4..24 {
                    chunk[y * TILE + x] = 150 + (index % 100) as u8;
                }
            }
        }
        IdxImages { rows: TILE, cols: TILE, pixels, labels: (0..count).map(|i| (i % 10) as u8).collect() }
    }

    fn scenes() -> DemoSection {
        DemoSection { layout: crate::manifest::Layout::Scenes, ..DemoSection::default() }
    }

    #[test]
    fn item_sizes_span_a_sixth_to_nearly_half_of_the_side() {
        assert_eq!(item_sizes(112), 19..=50);
        assert_eq!(item_sizes(224), 37..=100);
    }

    #[test]
    fn plans_respect_counts_sizes_bounds_and_visibility() {
        let demo = scenes();
        let sizes = item_sizes(112);
        let mut counts = [0u32; 6];
        for index in 0..2000 {
            let plan = plan(&demo, "train", index, 500);
            assert_eq!(plan.side, 112);
            counts[plan.items.len()] += 1;
            for (which, item) in plan.items.iter().enumerate() {
                assert!(sizes.contains(&item.size), "{item:?}");
                assert!(item.x + item.size <= 112 && item.y + item.size <= 112, "{item:?}");
                assert!(covered_fraction(&plan.items, which) <= MAX_COVERED, "{plan:?}");
            }
        }
        assert_eq!(counts[0], 0, "a scene always holds an item");
        // The wanted count is uniform in 1..=5; items are rarely left out.
        assert!(counts[1..].iter().all(|&count| count > 200), "{counts:?}");
    }

    #[test]
    fn a_plan_depends_only_on_seed_split_and_index() {
        let demo = scenes();
        assert_eq!(plan(&demo, "train", 7, 500), plan(&demo, "train", 7, 500));
        assert_ne!(plan(&demo, "train", 7, 500), plan(&demo, "train", 8, 500));
        assert_ne!(plan(&demo, "train", 7, 500), plan(&demo, "test", 7, 500));
        let reseeded = DemoSection { seed: 1, ..scenes() };
        assert_ne!(plan(&demo, "train", 7, 500), plan(&reseeded, "train", 7, 500));
    }

    #[test]
    fn rendering_max_blends_items_over_faint_clutter() {
        let source = source(20);
        let plan = ScenePlan {
            side: 112,
            items: vec![
                SceneItem { source: 3, size: 28, x: 10, y: 20 },
                SceneItem { source: 5, size: 40, x: 20, y: 25 },
            ],
            clutter_seed: 9,
        };
        let image = render(&plan, &source);
        assert_eq!(image.dimensions(), (112, 112));
        assert_eq!(image, render(&plan, &source), "deterministic");
        let background = clutter(112, 9);
        for (x, y, pixel) in image.enumerate_pixels() {
            assert!(pixel.0[0] >= background.get_pixel(x, y).0[0], "max-blend never darkens");
        }
        // An item at its own size is copied exactly (its margin shows the clutter through).
        assert_eq!(image.get_pixel(10 + 10, 20 + 10).0[0], 153);
        // Where the two items overlap, the brighter wins: item 5 (155 inside) over item 3 (153).
        let tile = GrayImage::from_raw(28, 28, source.image(5).to_vec()).expect("28×28");
        let resized = resize(&tile, 40, 40, FilterType::Triangle);
        let upper = resized.get_pixel(30 - 20, 38 - 25).0[0];
        assert!(upper > 153, "{upper}");
        assert_eq!(image.get_pixel(30, 38).0[0], upper);
        // Clutter stays faint: no background pixel above the strokes' brightest grey.
        assert!(background.pixels().all(|p| p.0[0] <= 90));
        assert!(background.pixels().any(|p| p.0[0] > NOISE_MAX), "strokes are drawn");
        assert_eq!(classes(&plan, &source), vec![3, 5]);
    }
}
