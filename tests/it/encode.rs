//! End-to-end tests of `sspa-pipe encode` on the installed MiniLM and EfficientNet-Lite0
//! (`scripts/install-encoders`; skipped with a note when absent, a failure under `CI`): the
//! Parquet contents are compared with the library's own output, and bad inputs are checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::prelude::*;
use sspa_clip::{Clip, ClipPreprocess};
use sspa_encoders::{EfficientNetLite0, ImagePreprocess, MiniLm, paths};

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sspa-pipe"));
    command.env_remove("RUST_LOG");
    command
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawn sspa-pipe")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The installed model directory holding `marker`, or `None` with a skip note.
fn installed(dir: PathBuf, marker: &str) -> Option<PathBuf> {
    if dir.join(marker).is_file() {
        return Some(dir);
    }
    let message = format!("`{}` not found: run scripts/install-encoders", dir.join(marker).display());
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("skipping: {message}");
    None
}

fn photos() -> [PathBuf; 2] {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/encoders/tests/fixtures");
    [fixtures.join("chelsea_224.png"), fixtures.join("franz-kafka.jpg")]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn rows_of(tensor: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, width] = tensor.dims();
    let values = tensor.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
    values.chunks_exact(width).map(<[f32]>::to_vec).collect()
}

#[test]
fn text_embeddings_match_the_library() {
    let Some(dir) = installed(paths::minilm_dir(), "model.safetensors") else { return };
    let temp = tempfile::tempdir().expect("tempdir");
    let input = temp.path().join("texts.txt");
    let texts =
        ["A photo of a cat.", "Pedestrians waiting at a crosswalk in the rain.", "Satellite image of farmland."];
    std::fs::write(&input, format!("{}\n", texts.join("\r\n"))).expect("write texts");
    let output = temp.path().join("texts.parquet");
    let out = run(&["encode", "text", "--model", "minilm", "--input", path(&input), "--output", path(&output)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let rows = sspa_table::read_text_encodings(&output).expect("read output");
    let expected = rows_of(MiniLm::load(&dir, &Device::flex()).expect("load").encode(&texts).expect("encode"));
    assert_eq!(rows.len(), 3);
    for (index, (row, expected)) in rows.iter().zip(&expected).enumerate() {
        assert_eq!(row.index, index as u32);
        assert_eq!(row.text, texts[index]);
        assert_eq!(row.embedding.len(), 384);
        let diff = max_abs_diff(&row.embedding, expected);
        assert!(diff <= 1e-5, "text {index}: differs by {diff}");
    }

    // The same model given as a directory.
    let again = temp.path().join("again.parquet");
    let out = run(&["encode", "text", "--model", path(&dir), "--input", path(&input), "--output", path(&again)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(sspa_table::read_text_encodings(&again).expect("read"), rows);
}

#[test]
fn image_features_and_patches_match_the_library() {
    let Some(dir) = installed(paths::efficientnet_dir(), "model.safetensors") else { return };
    let temp = tempfile::tempdir().expect("tempdir");
    let output = temp.path().join("images.parquet");
    let [cat, kafka] = photos();
    let args = ["encode", "image", "--model", "efficientnet-lite0", "--input", path(&cat), path(&kafka)];
    let out = run(&[&args[..], &["--output", path(&output), "--patches", "--batch-size", "1"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let model = EfficientNetLite0::load(&dir, &Device::flex()).expect("load");
    let images = [&cat, &kafka].map(|p| ImagePreprocess::open(p).expect("decode"));
    let expected = model.encode_images(&images, &ImagePreprocess::default()).expect("encode");
    let globals = rows_of(expected.global);
    let patches = expected.patches.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
    let rows = sspa_table::read_image_encodings(&output).expect("read output");
    assert_eq!(rows.len(), 2);
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row.path, path([&cat, &kafka][index]));
        let diff = max_abs_diff(&row.global, &globals[index]);
        assert!(diff <= 1e-4, "image {index}: global differs by {diff}");
        let row_patches = row.patches.as_ref().expect("patches column");
        assert_eq!(row_patches.len(), 49);
        let flat: Vec<f32> = row_patches.iter().flatten().copied().collect();
        let diff = max_abs_diff(&flat, &patches[index * 49 * 1280..(index + 1) * 49 * 1280]);
        assert!(diff <= 1e-4, "image {index}: patches differ by {diff}");
    }
}

#[test]
fn unreadable_images_are_reported_and_the_rest_encoded_with_exit_1() {
    if installed(paths::efficientnet_dir(), "model.safetensors").is_none() {
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let broken = temp.path().join("broken.png");
    std::fs::write(&broken, b"not an image").expect("write");
    let missing = temp.path().join("missing.jpg");
    let output = temp.path().join("images.parquet");
    let [cat, _] = photos();
    let out = run(&[
        "encode",
        "image",
        "--model",
        "efficientnet-lite0",
        "--input",
        path(&broken),
        path(&cat),
        path(&missing),
        "--output",
        path(&output),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("skipping `{}`", broken.display())), "{err}");
    assert!(err.contains(&format!("skipping `{}`", missing.display())), "{err}");
    let rows = sspa_table::read_image_encodings(&output).expect("read output");
    assert_eq!(rows.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), [path(&cat)]);
    assert!(rows[0].patches.is_none());

    // Nothing readable: an error and no output.
    let none = temp.path().join("none.parquet");
    let out =
        run(&["encode", "image", "--model", "efficientnet-lite0", "--input", path(&broken), "--output", path(&none)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("none of the 1 images could be read"), "{}", stderr(&out));
    assert!(!none.exists());
}

#[test]
fn bad_text_inputs_and_models_are_usage_errors() {
    let temp = tempfile::tempdir().expect("tempdir");
    let output = temp.path().join("out.parquet");
    let input = temp.path().join("texts.txt");
    std::fs::write(&input, "first\n\nthird\n").expect("write");
    let out = run(&["encode", "text", "--model", "minilm", "--input", path(&input), "--output", path(&output)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 2 is blank"), "{}", stderr(&out));

    std::fs::write(&input, "a text\n").expect("write");
    let out =
        run(&["encode", "text", "--model", path(temp.path()), "--input", path(&input), "--output", path(&output)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a supported model"), "{}", stderr(&out));

    let out = run(&["encode", "text", "--model", "no-such-model", "--input", path(&input), "--output", path(&output)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("neither a preset (minilm, efficientnet-lite0) nor an existing path"));

    let missing = temp.path().join("missing.txt");
    let out = run(&["encode", "text", "--model", "minilm", "--input", path(&missing), "--output", path(&output)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));

    if installed(paths::efficientnet_dir(), "model.safetensors").is_some() {
        let out = run(&[
            "encode",
            "text",
            "--model",
            "efficientnet-lite0",
            "--input",
            path(&input),
            "--output",
            path(&output),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("an image model: use `encode image`"), "{}", stderr(&out));
    }
    if installed(paths::minilm_dir(), "model.safetensors").is_some() {
        let [cat, _] = photos();
        let out = run(&["encode", "image", "--model", "minilm", "--input", path(&cat), "--output", path(&output)]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("is a text model (BERT): use `encode text`"), "{}", stderr(&out));
    }
    assert!(!output.exists());
}

#[test]
fn clip_models_encode_images_like_the_library_and_report_text_errors() {
    // The tiny CLIPs of crates/clip's tests; loading looks for the installed OpenAI BPE.
    if installed(sspa_clip::paths::clip_dir(), sspa_clip::paths::BPE_VOCAB).is_none() {
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/clip/tests/fixtures");
    let temp = tempfile::tempdir().expect("tempdir");
    let [cat, kafka] = photos();
    for model in [fixtures.join("clip_tiny_hf"), fixtures.join("clip_tiny_openai.safetensors")] {
        let output = temp.path().join("clip.parquet");
        let out = run(&[
            "encode",
            "image",
            "--model",
            path(&model),
            "--input",
            path(&cat),
            path(&kafka),
            "--output",
            path(&output),
            "--patches",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", model.display(), stderr(&out));

        let clip = Clip::load(&model, &Device::flex()).expect("load tiny CLIP");
        let images = [&cat, &kafka].map(|p| ClipPreprocess::open(p).expect("decode"));
        let size = clip.image_size() as u32;
        let batch = ClipPreprocess::with_size(size).batch(&images, &Device::flex()).expect("preprocess");
        let expected = clip.encode_image(batch);
        let [_, count, width] = expected.patches.dims();
        let globals = rows_of(expected.global);
        let patches = expected.patches.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
        let rows = sspa_table::read_image_encodings(&output).expect("read output");
        assert_eq!(rows.len(), 2);
        for (index, row) in rows.iter().enumerate() {
            let diff = max_abs_diff(&row.global, &globals[index]);
            assert!(diff <= 1e-5, "{}: image {index}: global differs by {diff}", model.display());
            let flat: Vec<f32> = row.patches.iter().flatten().flatten().copied().collect();
            let diff = max_abs_diff(&flat, &patches[index * count * width..(index + 1) * count * width]);
            assert!(diff <= 1e-5, "{}: image {index}: patches differ by {diff}", model.display());
        }
    }

    // The toy vocabulary (256 ids) cannot hold the real tokenizer's ids: a clear error, exit 1.
    let input = temp.path().join("texts.txt");
    std::fs::write(&input, "a photo of a cat\n").expect("write");
    let output = temp.path().join("texts.parquet");
    let model = fixtures.join("clip_tiny_hf");
    let out = run(&["encode", "text", "--model", path(&model), "--input", path(&input), "--output", path(&output)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("outside the text tower's vocabulary"), "{}", stderr(&out));
    assert!(!output.exists());
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
