//! EfficientNet-Lite0 parity against the plain-torch reference (fixture from
//! scripts/reference/make_encoder_fixtures.py) on two real photos, with the installed weights.
#![allow(clippy::unwrap_used)]

use crate::common;

use burn::prelude::*;
use sspa_encoders::{EfficientNetLite0, ImagePreprocess, paths};

fn top5(logits: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(5);
    order
}

#[test]
fn features_and_classes_match_the_torch_reference_on_two_photos() {
    let Some(dir) = common::installed(paths::efficientnet_dir(), "model.safetensors") else { return };
    let device = Device::flex();
    let model = EfficientNetLite0::load(&dir, &device).unwrap();
    let fixture = common::fixture_json("efficientnet_lite0.json");
    let preprocess = ImagePreprocess::default();
    assert_eq!(preprocess.mean.to_vec(), common::floats(&fixture["normalisation"]["mean"]));
    assert_eq!(preprocess.std.to_vec(), common::floats(&fixture["normalisation"]["std"]));

    let names = ["kafka", "chelsea"];
    let images = common::fixture_photos(&fixture, &names);
    let batch = preprocess.batch_exact(&images, &device).unwrap();
    let features = model.forward(batch);
    assert_eq!(features.patches.dims(), [2, 49, 1280]);
    let logits = model.classify(features.global.clone()).into_data().try_to_vec::<f32>().unwrap();
    let global = features.global.into_data().try_to_vec::<f32>().unwrap();
    let patches = features.patches.into_data().try_to_vec::<f32>().unwrap();

    for (index, name) in names.iter().enumerate() {
        let expected = &fixture["images"][name];
        let classes: Vec<usize> =
            expected["top5"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(top5(&logits[index * 1000..(index + 1) * 1000]), classes, "{name} top-5");
        let global_diff =
            common::max_abs_diff(&global[index * 1280..(index + 1) * 1280], &common::floats(&expected["global"]));
        let mut patch_diff = 0.0_f32;
        for (row, values) in
            expected["patch_rows"].as_array().unwrap().iter().zip(expected["patches"].as_array().unwrap())
        {
            let start = (index * 49 + row.as_u64().unwrap() as usize) * 1280;
            patch_diff = patch_diff.max(common::max_abs_diff(&patches[start..start + 64], &common::floats(values)));
        }
        eprintln!("{name}: global max abs diff {global_diff:e}, patch rows max abs diff {patch_diff:e}");
        assert!(global_diff <= 1e-3, "{name} global diff {global_diff}");
        assert!(patch_diff <= 1e-3, "{name} patch diff {patch_diff}");
    }

    // The whole path from the original JPEG (decoder and resize differ from PIL's by a few
    // grey levels): the reference's top class must come first.
    let photo = ImagePreprocess::open(&common::fixtures().join("franz-kafka.jpg")).unwrap();
    let features = model.encode_images(&[photo], &preprocess).unwrap();
    let logits = model.classify(features.global).into_data().try_to_vec::<f32>().unwrap();
    let expected_top = fixture["images"]["kafka"]["top5"][0].as_u64().unwrap() as usize;
    assert_eq!(top5(&logits)[0], expected_top);
}
