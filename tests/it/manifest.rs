//! `sspa-pipe manifest pin|check` on temporary manifests and data roots.

use std::path::Path;
use std::process::{Command, Output};

const MANIFEST: &str = r#"# Toy dataset: run `sspa-pipe manifest pin` after changing its files.
name = "toy"
domain = "test"

[labels]
file = "toy/labels.txt"

[source]
format = "json_list"

[splits.train]
annotations = "toy/train.json"

[splits.test]
annotations = "toy/test.json"
"#;

fn manifest_command(args: &[&str], data_root: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sspa-pipe"))
        .env_remove("SSPA_DATA_ROOT")
        .env_remove("RUST_LOG")
        .arg("manifest")
        .args(args)
        .arg("--data-root")
        .arg(data_root)
        .output()
        .expect("spawn sspa-pipe")
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A project with `data_manifest/toy.toml` and its three annotation files under `data/`.
fn project() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    std::fs::create_dir_all(root.join("toy")).expect("mkdir");
    std::fs::write(root.join("toy/labels.txt"), "cat\ndog\n").expect("write");
    std::fs::write(root.join("toy/train.json"), "{\"images\": [[\"a.png\", [\"cat\"]]]}\n").expect("write");
    std::fs::write(root.join("toy/test.json"), "{\"images\": [[\"b.png\", [\"dog\"]]]}\n").expect("write");
    let manifest = dir.path().join("data_manifest/toy.toml");
    std::fs::create_dir_all(manifest.parent().expect("parent")).expect("mkdir");
    std::fs::write(&manifest, MANIFEST).expect("write");
    (dir, root, manifest)
}

fn manifest_arg(manifest: &Path) -> &str {
    manifest.to_str().expect("utf-8 path")
}

#[test]
fn pin_then_check_passes_and_keeps_the_comments() {
    let (_dir, root, manifest) = project();
    let out = manifest_command(&["pin", manifest_arg(&manifest)], &root);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("added")).count(), 3, "{stdout}");
    let pinned = std::fs::read_to_string(&manifest).expect("read");
    assert!(pinned.starts_with(MANIFEST), "the text before [checksums] changed:\n{pinned}");
    // The hashes themselves are checked against `blake3` in sspa-data's unit tests.
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, file, hash] = fields[..] else { panic!("unexpected line {line}") };
        assert_eq!(hash.len(), 64, "{line}");
        assert!(pinned.contains(&format!("\"{file}\" = \"{hash}\"")), "{pinned}");
    }

    let out = manifest_command(&["check", manifest_arg(&manifest)], &root);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok")).count(), 3, "{stdout}");

    // Pinning again changes nothing.
    let out = manifest_command(&["pin", manifest_arg(&manifest)], &root);
    assert_eq!(text(&out).0.lines().filter(|l| l.starts_with("unchanged")).count(), 3);
    assert_eq!(std::fs::read_to_string(&manifest).expect("read"), pinned);
}

#[test]
fn an_edited_file_fails_the_check_naming_it_and_its_line() {
    let (_dir, root, manifest) = project();
    assert_eq!(manifest_command(&["pin", manifest_arg(&manifest)], &root).status.code(), Some(0));
    let pinned = std::fs::read_to_string(&manifest).expect("read");
    let line = pinned.lines().position(|l| l.starts_with("\"toy/train.json\"")).expect("entry") + 1;
    let mut bytes = std::fs::read(root.join("toy/train.json")).expect("read");
    bytes[3] ^= 1;
    std::fs::write(root.join("toy/train.json"), bytes).expect("write");

    let out = manifest_command(&["check", manifest_arg(&manifest)], &root);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("MISMATCH")).collect();
    assert_eq!(failures.len(), 1, "{stdout}");
    assert!(failures[0].contains(&format!("toy.toml:{line}")), "{}", failures[0]);
    assert!(failures[0].contains("toy/train.json"), "{}", failures[0]);
    assert!(stderr.contains("1 of the checks failed"), "{stderr}");
}

#[test]
fn a_missing_pinned_file_fails_and_an_unpinned_one_is_listed() {
    let (_dir, root, manifest) = project();
    std::fs::remove_file(root.join("toy/test.json")).expect("remove");
    let out = manifest_command(&["pin", manifest_arg(&manifest)], &root);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("missing    toy/test.json"), "{stdout}");
    let check = manifest_command(&["check", manifest_arg(&manifest)], &root);
    let (stdout, _) = text(&check);
    assert_eq!(check.status.code(), Some(0), "an unpinned file is not a failure: {stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("unpinned") && l.contains("toy/test.json")), "{stdout}");

    std::fs::remove_file(root.join("toy/train.json")).expect("remove");
    let check = manifest_command(&["check", manifest_arg(&manifest)], &root);
    let (stdout, stderr) = text(&check);
    assert_eq!(check.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("MISSING") && l.contains("toy/train.json")), "{stdout}");
}

#[test]
fn the_shipped_manifests_parse_and_say_how_to_pin() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("data_manifest");
    let empty = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&source).expect("read_dir").flatten() {
        let path = entry.path();
        let out = manifest_command(&["check", path.to_str().expect("utf-8")], empty.path());
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}\n{stderr}", path.display());
        let manifest = std::fs::read_to_string(&path).expect("read");
        if manifest.contains("[checksums]") {
            assert!(manifest.contains("sspa-pipe manifest pin"), "{} does not say how to pin", path.display());
        }
    }
}
