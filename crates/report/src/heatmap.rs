//! Attention and gate maps as PNG: a map over the image encoder's patch grid, upsampled to the
//! image and blended over it as a heat map (SSPA Figs. 7–8).
//!
//! - **Grid**: `rows × columns` patches, row-major (patch `r · columns + c`), as EfficientNet's
//!   last feature map is flattened (`[B, C, H, W] → [B, H·W, C]`). The grid is spread evenly
//!   over the image and upsampled bilinearly between cell centres, so a cell's value is exact at
//!   its centre.
//! - **Normalisation**: per map, `t = (v − min) / (max − min)`; a constant map is `t = 0`
//!   everywhere. Captions carry the raw `min`–`max`, so maps can still be compared.
//! - **Colour scale** ([`colormap`]): five stops, linear in RGB between them — blue `#0000ff`
//!   (`t = 0`, lowest), cyan `#00ffff`, green `#00ff00`, yellow `#ffff00`, red `#ff0000`
//!   (`t = 1`, highest).
//! - **Blend**: `out = (1 − α) · pixel + α · colour` with [`OPACITY`] `α`; images smaller than
//!   [`MIN_SIDE`] are first enlarged by an integer factor (nearest neighbour, so pixels stay
//!   sharp) to keep small inputs (the demo's 112²) readable.

use std::io::Cursor;

use image::ImageEncoder;
use image::codecs::png::PngEncoder;

/// Weight of the heat-map colour in the blend.
pub const OPACITY: f32 = 0.55;
/// Shorter images are enlarged by an integer factor to at least this many pixels a side.
pub const MIN_SIDE: u32 = 224;

/// The colour stops of [`colormap`], lowest first.
pub const COLOR_STOPS: [[u8; 3]; 5] = [[0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0]];

/// What can be wrong with the inputs of [`overlay_png`].
#[derive(Debug, thiserror::Error)]
pub enum HeatmapError {
    /// The pixel buffer does not hold `width · height` RGB pixels.
    #[error("image of `{width}×{height}` needs `{expected}` RGB bytes, got `{actual}`")]
    Pixels { width: u32, height: u32, expected: usize, actual: usize },
    /// The map does not hold `rows · columns` values, or the grid is empty.
    #[error("patch map of `{rows}×{columns}` cells has `{actual}` values")]
    Grid { rows: usize, columns: usize, actual: usize },
    /// A value that is NaN or infinite.
    #[error("patch map value `{value}` at cell `{index}` is not finite")]
    NotFinite { index: usize, value: f32 },
    /// PNG encoding failed.
    #[error("encoding the PNG: {0}")]
    Encode(#[from] image::ImageError),
}

/// Row-major RGB8 pixels.
#[derive(Debug, Clone, Copy)]
pub struct RgbImage<'a> {
    pub width: u32,
    pub height: u32,
    pub pixels: &'a [u8],
}

/// Values over a `rows × columns` patch grid, row-major.
#[derive(Debug, Clone, Copy)]
pub struct PatchMap<'a> {
    pub rows: usize,
    pub columns: usize,
    pub values: &'a [f32],
}

impl PatchMap<'_> {
    /// `(min, max)` of the values.
    pub fn range(&self) -> (f32, f32) {
        self.values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
    }

    fn validate(&self) -> Result<(), HeatmapError> {
        if self.rows == 0 || self.columns == 0 || self.values.len() != self.rows * self.columns {
            return Err(HeatmapError::Grid { rows: self.rows, columns: self.columns, actual: self.values.len() });
        }
        match self.values.iter().position(|value| !value.is_finite()) {
            Some(index) => Err(HeatmapError::NotFinite { index, value: self.values[index] }),
            None => Ok(()),
        }
    }

    /// Bilinear value at grid coordinates `(row, column)` (cell centres at integers), clamped.
    fn sample(&self, row: f32, column: f32) -> f32 {
        let row = row.clamp(0.0, (self.rows - 1) as f32);
        let column = column.clamp(0.0, (self.columns - 1) as f32);
        let (r0, c0) = (row.floor() as usize, column.floor() as usize);
        let (r1, c1) = ((r0 + 1).min(self.rows - 1), (c0 + 1).min(self.columns - 1));
        let (fr, fc) = (row - r0 as f32, column - c0 as f32);
        let at = |r: usize, c: usize| self.values[r * self.columns + c];
        let top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc;
        let bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc;
        top * (1.0 - fr) + bottom * fr
    }
}

/// The colour of `t ∈ [0, 1]` (clamped; NaN is `0`) on the scale of [`COLOR_STOPS`].
pub fn colormap(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let segments = (COLOR_STOPS.len() - 1) as f32;
    let position = t * segments;
    let index = (position.floor() as usize).min(COLOR_STOPS.len() - 2);
    let fraction = position - index as f32;
    let (from, to) = (COLOR_STOPS[index], COLOR_STOPS[index + 1]);
    std::array::from_fn(|channel| {
        (f32::from(from[channel]) + (f32::from(to[channel]) - f32::from(from[channel])) * fraction).round() as u8
    })
}

/// The integer factor [`overlay_png`] enlarges an image of `width × height` by.
pub fn scale_factor(width: u32, height: u32) -> u32 {
    let shorter = width.min(height).max(1);
    MIN_SIDE.div_ceil(shorter).max(1)
}

/// `image` with `map` upsampled over it as a heat map, PNG-encoded (see the module docs).
///
/// # Errors
/// [`HeatmapError`] when the pixel buffer or the map does not match its sizes, or the map holds
/// a non-finite value.
pub fn overlay_png(image: &RgbImage<'_>, map: &PatchMap<'_>) -> Result<Vec<u8>, HeatmapError> {
    let expected = image.width as usize * image.height as usize * 3;
    if image.pixels.len() != expected || expected == 0 {
        return Err(HeatmapError::Pixels {
            width: image.width,
            height: image.height,
            expected,
            actual: image.pixels.len(),
        });
    }
    map.validate()?;
    let (low, high) = map.range();
    let spread = high - low;
    let scale = scale_factor(image.width, image.height);
    let (width, height) = (image.width * scale, image.height * scale);
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let row = (y as f32 + 0.5) * map.rows as f32 / height as f32 - 0.5;
        let source_row = (y / scale) as usize * image.width as usize;
        for x in 0..width {
            let column = (x as f32 + 0.5) * map.columns as f32 / width as f32 - 0.5;
            let value = map.sample(row, column);
            let t = if spread > 0.0 { (value - low) / spread } else { 0.0 };
            let colour = colormap(t);
            let source = (source_row + (x / scale) as usize) * 3;
            for (&pixel, &tint) in image.pixels[source..source + 3].iter().zip(&colour) {
                out.push(((1.0 - OPACITY) * f32::from(pixel) + OPACITY * f32::from(tint)).round() as u8);
            }
        }
    }
    let mut png = Vec::new();
    PngEncoder::new(Cursor::new(&mut png)).write_image(&out, width, height, image::ExtendedColorType::Rgb8)?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("decodes").to_rgb8()
    }

    #[test]
    fn colormap_hits_its_stops() {
        for (index, stop) in COLOR_STOPS.iter().enumerate() {
            assert_eq!(colormap(index as f32 / 4.0), *stop, "stop {index}");
        }
        assert_eq!(colormap(-1.0), COLOR_STOPS[0]);
        assert_eq!(colormap(2.0), COLOR_STOPS[4]);
        assert_eq!(colormap(f32::NAN), COLOR_STOPS[0]);
        assert_eq!(colormap(0.125), [0, 128, 255]);
    }

    #[test]
    fn the_peak_lands_in_its_cell() {
        // 3×4 grid over a 120×90 grey image: peak at row 1, column 2; minimum at row 2, column 0.
        let pixels = vec![128u8; 120 * 90 * 3];
        let image = RgbImage { width: 120, height: 90, pixels: &pixels };
        let mut values = vec![0.2f32; 12];
        values[4 + 2] = 1.0;
        values[8] = 0.0;
        let png = overlay_png(&image, &PatchMap { rows: 3, columns: 4, values: &values }).expect("png");
        let decoded = decode(&png);
        let scale = scale_factor(120, 90);
        assert_eq!(scale, 3);
        assert_eq!(decoded.dimensions(), (360, 270));
        // Cell (r, c) centre in output pixels: ((c + 0.5) · 90, (r + 0.5) · 90).
        let centre = |row: u32, column: u32| decoded.get_pixel(column * 90 + 45, row * 90 + 45).0;
        let blend = |colour: u8| ((1.0 - OPACITY) * 128.0 + OPACITY * f32::from(colour)).round() as u8;
        // Pixel centres sit half a pixel off the cell centre, where red changes fast: allow 8 levels.
        let near = |actual: [u8; 3], expected: [u8; 3]| actual.iter().zip(expected).all(|(&a, e)| a.abs_diff(e) <= 8);
        assert!(near(centre(1, 2), [blend(255), blend(0), blend(0)]), "peak is red: {:?}", centre(1, 2));
        assert!(near(centre(2, 0), [blend(0), blend(0), blend(255)]), "minimum is blue: {:?}", centre(2, 0));
        // Another cell of the plain 0.2 level: between blue and cyan.
        let plain = centre(0, 0);
        assert!(plain[0] == blend(0) && plain[2] == blend(255) && plain[1] > blend(0), "{plain:?}");
        // The reddest pixel of the whole image is inside the peak cell.
        let (x, y, _) = decoded
            .enumerate_pixels()
            .max_by_key(|(_, _, pixel)| i32::from(pixel.0[0]) - i32::from(pixel.0[2]))
            .expect("pixels");
        assert_eq!((x / 90, y / 90), (2, 1), "reddest pixel at ({x}, {y})");
    }

    #[test]
    fn image_pixels_show_through() {
        // Left half black, right half white; a constant map is all blue.
        let mut pixels = vec![0u8; 8 * 8 * 3];
        for y in 0..8 {
            for x in 4..8 {
                pixels[(y * 8 + x) * 3..(y * 8 + x) * 3 + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let values = [0.5f32; 4];
        let png = overlay_png(
            &RgbImage { width: 8, height: 8, pixels: &pixels },
            &PatchMap { rows: 2, columns: 2, values: &values },
        )
        .expect("png");
        let decoded = decode(&png);
        let scale = scale_factor(8, 8);
        assert_eq!(decoded.dimensions(), (8 * scale, 8 * scale));
        let dark = decoded.get_pixel(0, 0).0;
        let light = decoded.get_pixel(8 * scale - 1, 0).0;
        let blend = |pixel: f32, colour: f32| ((1.0 - OPACITY) * pixel + OPACITY * colour).round() as u8;
        assert_eq!(dark, [0, 0, blend(0.0, 255.0)]);
        assert_eq!(light, [blend(255.0, 0.0), blend(255.0, 0.0), 255]);
    }

    #[test]
    fn bad_inputs_are_named() {
        let pixels = vec![0u8; 10];
        let values = [0.0f32; 4];
        let map = PatchMap { rows: 2, columns: 2, values: &values };
        let error = overlay_png(&RgbImage { width: 2, height: 2, pixels: &pixels }, &map).expect_err("short buffer");
        assert!(error.to_string().contains("needs `12` RGB bytes, got `10`"), "{error}");
        let pixels = vec![0u8; 12];
        let image = RgbImage { width: 2, height: 2, pixels: &pixels };
        let error = overlay_png(&image, &PatchMap { rows: 3, columns: 2, values: &values }).expect_err("grid");
        assert!(error.to_string().contains("`3×2` cells has `4` values"), "{error}");
        let nan = [0.0, f32::NAN, 0.0, 0.0];
        let error = overlay_png(&image, &PatchMap { rows: 2, columns: 2, values: &nan }).expect_err("nan");
        assert!(error.to_string().contains("cell `1`"), "{error}");
    }
}
