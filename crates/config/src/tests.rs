use super::*;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["pipeline/pipeline.toml", "templates/kap/demo.j2", "data_manifest/demo.toml"] {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, "").expect("write");
    }
    dir
}

const GOOD: &str = r#"
[domain]
name = "demo"
description = "Clothing items."

[labels]
names = ["shirt", "shoe"]

[prompt]
template = "templates/kap/demo.j2"

[data]
manifest = "data_manifest/demo.toml"

[train]
lr = 1e-3
"#;

#[test]
fn good_config_loads_with_defaults() {
    let dir = project();
    let c = parse(Path::new("demo.toml"), GOOD, dir.path()).expect("valid");
    assert_eq!(c.train.lr, 1e-3);
    assert_eq!(c.train.batch_size, 32);
    assert_eq!(c.train.asl.gamma_neg, 4.0);
    assert_eq!(c.labels.names.as_deref().map(<[String]>::len), Some(2));
}

#[test]
fn every_error_is_reported_with_line_and_column() {
    let dir = project();
    let text = GOOD.replace("lr = 1e-3", "lrr = 1e-3\nbatch_size = \"big\"\nepochs = -3")
        + "\n[llm]\ntemperature = 9.0\nfoo = 1\n[extra]\nx = 1\n";
    let err = parse(Path::new("demo.toml"), &text, dir.path()).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("demo.toml:16:1: unknown key `train.lrr`"), "{shown}");
    assert!(shown.contains("demo.toml:17:14: `train.batch_size`: invalid type"), "{shown}");
    assert!(shown.contains("demo.toml:18:10: `train.epochs`: invalid value: integer `-3`"), "{shown}");
    assert!(shown.contains("demo.toml:22:1: unknown key `llm.foo`"), "{shown}");
    assert!(shown.contains("demo.toml:23:2: unknown section `[extra]`"), "{shown}");
    assert_eq!(err.errors.len(), 5, "{shown}");
    let lines: Vec<usize> = err.errors.iter().map(|e| e.line).collect();
    assert!(lines.is_sorted(), "{lines:?}");
}

#[test]
fn semantic_checks_point_at_the_key() {
    let dir = project();
    let text = GOOD
        .replace("lr = 1e-3", "lr = -1.0\nema_decay = 1.5")
        .replace("templates/kap/demo.j2", "templates/kap/missing.j2");
    let err = parse(Path::new("d.toml"), &text, dir.path()).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("d.toml:10:1: `prompt.template`: `templates/kap/missing.j2` does not exist"), "{shown}");
    assert!(shown.contains("d.toml:16:1: `train.lr`: -1 must be positive"), "{shown}");
    assert!(shown.contains("d.toml:17:1: `train.ema_decay`: 1.5 is outside [0, 1)"), "{shown}");
}

#[test]
fn duplicate_label_names_its_position() {
    let dir = project();
    let text = GOOD.replace(r#"["shirt", "shoe"]"#, r#"["shirt", "shirt"]"#);
    let err = parse(Path::new("d.toml"), &text, dir.path()).expect_err("invalid");
    assert!(err.to_string().contains("d.toml:7:19: `labels.names.1`: duplicate label `shirt`"), "{err}");
}

#[test]
fn syntax_errors_carry_position() {
    let dir = project();
    let err = parse(Path::new("d.toml"), "[domain\nname = 1\n", dir.path()).expect_err("invalid");
    assert_eq!(err.errors[0].line, 1, "{err}");
}

#[test]
fn missing_sections_are_named() {
    let dir = project();
    let err = parse(Path::new("d.toml"), "[domain]\nname='x'\ndescription='y'\n", dir.path()).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("missing required section `[prompt]`"), "{shown}");
    assert!(shown.contains("missing required section `[data]`"), "{shown}");
}
