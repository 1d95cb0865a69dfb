//! How a stored image is encoded in a shard file (`data.shard_encoding`): `raw` keeps the
//! uint8 RGB pixels as they are; `png` and `jpeg` hold one encoded image each, decoded again
//! when the image is read. The index's offsets delimit each image's bytes either way.

use crate::preprocess::RgbPixels;
use image::ImageEncoder;
use sspa_config::ShardEncoding;

/// The encoding of the images of one shard directory, with its quality (`jpeg` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub encoding: ShardEncoding,
    pub jpeg_quality: u8,
}

impl Codec {
    /// Raw pixels (the default).
    pub const RAW: Codec = Codec { encoding: ShardEncoding::Raw, jpeg_quality: sspa_config::DEFAULT_JPEG_QUALITY };

    /// The codec a `[data]` section asks for at `image_size` (`auto` resolved).
    pub fn for_data(data: &sspa_config::DataSection, image_size: u32) -> Self {
        Self { encoding: data.shard_encoding.resolve(image_size), jpeg_quality: data.jpeg_quality() }
    }

    /// The bytes to store for `image`. Raw hands the pixels back without a copy.
    pub fn encode(&self, image: RgbPixels) -> Result<Vec<u8>, String> {
        let (width, height) = (image.width, image.height);
        let mut out = Vec::new();
        match self.encoding {
            ShardEncoding::Raw | ShardEncoding::Auto => return Ok(image.pixels),
            ShardEncoding::Png => image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            )
            .write_image(&image.pixels, width, height, image::ExtendedColorType::Rgb8),
            ShardEncoding::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, self.jpeg_quality)
                .write_image(&image.pixels, width, height, image::ExtendedColorType::Rgb8),
        }
        .map_err(|e| format!("{} encoding: {e}", self.encoding.name()))?;
        Ok(out)
    }

    /// The RGB pixels of a stored image of `width × height`, from its stored bytes.
    ///
    /// # Errors
    /// A message saying what is wrong: bytes that do not decode, or decode to another size than
    /// the index records.
    pub fn decode(&self, bytes: Vec<u8>, width: u32, height: u32) -> Result<Vec<u8>, String> {
        let expected = u64::from(width) * u64::from(height) * 3;
        let format = match self.encoding {
            ShardEncoding::Raw | ShardEncoding::Auto => None,
            ShardEncoding::Png => Some(image::ImageFormat::Png),
            ShardEncoding::Jpeg => Some(image::ImageFormat::Jpeg),
        };
        let pixels = match format {
            None => bytes,
            Some(format) => {
                let decoded = image::load_from_memory_with_format(&bytes, format)
                    .map_err(|e| format!("{} decoding: {e}", self.encoding.name()))?;
                if (decoded.width(), decoded.height()) != (width, height) {
                    return Err(format!(
                        "decodes to {}×{}, the index says {width}×{height}",
                        decoded.width(),
                        decoded.height()
                    ));
                }
                decoded.into_rgb8().into_raw()
            }
        };
        if pixels.len() as u64 != expected {
            return Err(format!("{} bytes of pixels, {width}×{height} RGB needs {expected}", pixels.len()));
        }
        Ok(pixels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> RgbPixels {
        let pixels = (0..height)
            .flat_map(|y| (0..width).flat_map(move |x| [(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]))
            .collect();
        RgbPixels { width, height, pixels }
    }

    #[test]
    fn png_round_trips_exactly_and_jpeg_closely() {
        let image = gradient(37, 23);
        let png = Codec { encoding: ShardEncoding::Png, ..Codec::RAW };
        let stored = png.encode(image.clone()).expect("png");
        assert!(stored.starts_with(b"\x89PNG"));
        assert_eq!(png.decode(stored, 37, 23).expect("decode"), image.pixels);
        let jpeg = Codec { encoding: ShardEncoding::Jpeg, jpeg_quality: 95 };
        let stored = jpeg.encode(image.clone()).expect("jpeg");
        assert!(stored.starts_with(&[0xFF, 0xD8]));
        let back = jpeg.decode(stored, 37, 23).expect("decode");
        let mean_error =
            back.iter().zip(&image.pixels).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / back.len() as f64;
        assert!(mean_error < 3.0, "mean absolute error {mean_error}");
        let raw = Codec::RAW.encode(image.clone()).expect("raw");
        assert_eq!(Codec::RAW.decode(raw, 37, 23).expect("raw"), image.pixels);
    }

    #[test]
    fn a_size_other_than_the_index_says_or_garbage_is_an_error() {
        let png = Codec { encoding: ShardEncoding::Png, ..Codec::RAW };
        let stored = png.encode(gradient(8, 4)).expect("png");
        let err = png.decode(stored, 4, 8).expect_err("wrong size");
        assert!(err.contains("decodes to 8×4, the index says 4×8"), "{err}");
        let err = png.decode(vec![1, 2, 3], 1, 1).expect_err("garbage");
        assert!(err.starts_with("png decoding"), "{err}");
        let err = Codec::RAW.decode(vec![0; 5], 1, 2).expect_err("short");
        assert!(err.contains("5 bytes of pixels, 1×2 RGB needs 6"), "{err}");
    }
}
