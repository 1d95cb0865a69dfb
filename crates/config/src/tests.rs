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
    let c = parse(Path::new("demo.toml"), GOOD, dir.path(), &Checks::default()).expect("valid");
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
    let err = parse(Path::new("demo.toml"), &text, dir.path(), &Checks::default()).expect_err("invalid");
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
    let err = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("d.toml:10:1: `prompt.template`: `templates/kap/missing.j2` does not exist"), "{shown}");
    assert!(shown.contains("d.toml:16:1: `train.lr`: -1 must be positive"), "{shown}");
    assert!(shown.contains("d.toml:17:1: `train.ema_decay`: 1.5 is outside [0, 1)"), "{shown}");
}

#[test]
fn duplicate_label_names_its_position() {
    let dir = project();
    let text = GOOD.replace(r#"["shirt", "shoe"]"#, r#"["shirt", "shirt"]"#);
    let err = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect_err("invalid");
    assert!(err.to_string().contains("d.toml:7:19: `labels.names.1`: duplicate label `shirt`"), "{err}");
}

#[test]
fn syntax_errors_carry_position() {
    let dir = project();
    let err = parse(Path::new("d.toml"), "[domain\nname = 1\n", dir.path(), &Checks::default()).expect_err("invalid");
    assert_eq!(err.errors[0].line, 1, "{err}");
}

#[test]
fn missing_sections_are_named() {
    let dir = project();
    let err = parse(Path::new("d.toml"), "[domain]\nname='x'\ndescription='y'\n", dir.path(), &Checks::default())
        .expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("missing required section `[prompt]`"), "{shown}");
    assert!(shown.contains("missing required section `[data]`"), "{shown}");
}

fn with_sections(extra: &str) -> String {
    format!("{GOOD}{extra}").replace("[train]\nlr = 1e-3\n", "")
}

#[test]
fn cross_field_rules_are_reported_together() {
    let dir = project();
    let text =
        with_sections("[model]\npreset = \"clip-vit-b16\"\n[train]\ndevice = \"cuda:0\"\nprecision = \"mixed\"\n");
    let err = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("`clip-vit-b16` needs CLIP weights"), "{text}");
    assert!(text.contains("`train.device`: `cuda:0` needs the libtorch backend"), "{text}");
    assert_eq!(err.errors.len(), 2, "{text}");
}

#[test]
fn libtorch_devices_need_the_feature() {
    let dir = project();
    let text = with_sections("[train]\ndevice = \"cuda:0\"\nprecision = \"mixed\"\n");
    let err = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect_err("no tch");
    assert!(err.to_string().contains("--features tch"), "{err}");
    let with_tch = Checks { libtorch: true, external: None };
    let config = parse(Path::new("d.toml"), &text, dir.path(), &with_tch).expect("tch build");
    assert_eq!(config.train.device, ComputeDevice::Cuda(0));
    assert_eq!(config.train.precision, Precision::Mixed);
}

#[test]
fn every_precision_parses_on_every_device() {
    // burn's flex CPU backend computes bf16 with autodiff: no precision needs libtorch.
    let dir = project();
    let with_tch = Checks { libtorch: true, external: None };
    for (name, precision) in [("f32", Precision::F32), ("mixed", Precision::Mixed), ("bf16", Precision::Bf16)] {
        assert_eq!(precision.to_string(), name);
        for (device, checks) in [("cpu", Checks::default()), ("libtorch", with_tch), ("cuda:1", with_tch)] {
            let text = with_sections(&format!("[train]\ndevice = \"{device}\"\nprecision = \"{name}\"\n"));
            let config = parse(Path::new("d.toml"), &text, dir.path(), &checks)
                .unwrap_or_else(|err| panic!("`{device}` with `{name}`: {err}"));
            assert_eq!(config.train.precision, precision, "`{device}` with `{name}`");
        }
        let overridden = parse_with_overrides(
            Path::new("d.toml"),
            GOOD,
            dir.path(),
            &Checks::default(),
            &overrides(&[&format!("train.precision={name}")]),
        )
        .expect("override");
        assert_eq!(overridden.train.precision, precision);
    }
    // Other spellings and other float types are refused.
    for wrong in ["BF16", "fp16", "f16"] {
        let text = with_sections(&format!("[train]\nprecision = \"{wrong}\"\n"));
        let err = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect_err(wrong);
        assert!(err.to_string().contains("train.precision"), "{err}");
    }
}

#[test]
fn closed_sets_are_enums() {
    let dir = project();
    let text = with_sections("[model]\npreset = \"vit-huge\"\n[train]\ndevice = \"gpu\"\n");
    let err = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("`model.preset`") && text.contains("vit-huge"), "{text}");
    assert!(text.contains("`train.device`: `gpu` must be `cpu`, `libtorch` or `cuda:N`"), "{text}");
}

#[test]
fn external_checks_are_located_like_the_others() {
    let dir = project();
    let text = with_sections("[evaluate]\nsplit = \"validation\"\n");
    let external = |config: &DomainConfig, _: &Path| {
        vec![("evaluate.split".to_string(), format!("`{}` is not a split of the manifest", config.evaluate.split))]
    };
    let checks = Checks { libtorch: false, external: Some(&external) };
    let err = parse(Path::new("d.toml"), &text, dir.path(), &checks).expect_err("invalid");
    let line = text.lines().position(|l| l.starts_with("split")).expect("line") + 1;
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.errors[0].line, line, "{err}");
    assert!(err.to_string().contains("`evaluate.split`: `validation` is not a split of the manifest"), "{err}");
}

fn overrides(arguments: &[&str]) -> Vec<Override> {
    arguments.iter().map(|a| a.parse().expect("override")).collect()
}

#[test]
fn overrides_are_validated_like_the_file_and_name_their_argument() {
    let dir = project();
    let checks = Checks::default();
    let good = overrides(&["train.lr=2e-3", "ablation.gate=false", "model.preset=minilm-efficientnet-lite0"]);
    let config = parse_with_overrides(Path::new("d.toml"), GOOD, dir.path(), &checks, &good).expect("valid");
    assert_eq!(config.train.lr, 2e-3);
    assert!(!config.ablation.gate, "a section the file lacks is created");

    let bad = overrides(&["train.lr=\"fast\"", "train.learning_rate=1", "model.preset=vit-huge"]);
    let err = parse_with_overrides(Path::new("d.toml"), GOOD, dir.path(), &checks, &bad).expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("`-S train.lr=\"fast\"`: `train.lr`: invalid type"), "{text}");
    assert!(text.contains("`-S train.learning_rate=1`: unknown key `train.learning_rate`"), "{text}");
    assert!(text.contains("`-S model.preset=vit-huge`: `model.preset`"), "{text}");
    assert_eq!(err.errors.len(), 3, "{text}");

    // Rules between values, too, once every value has its type.
    let bad = overrides(&["train.epochs=0", "train.device=libtorch"]);
    let err = parse_with_overrides(Path::new("d.toml"), GOOD, dir.path(), &checks, &bad).expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("`-S train.epochs=0`: `train.epochs`: 0 must be positive"), "{text}");
    assert!(text.contains("`-S train.device=libtorch`: `train.device`: `libtorch` needs the libtorch"), "{text}");
}

#[test]
fn kap_sources_and_the_old_booleans() {
    let dir = project();
    let kap = |value: &str| {
        parse(
            Path::new("d.toml"),
            &with_sections(&format!("[ablation]\nkap = {value}\n")),
            dir.path(),
            &Checks::default(),
        )
        .map(|c| c.ablation.kap)
    };
    assert_eq!(kap("\"llm\"").expect("llm"), KapSource::Llm);
    assert_eq!(kap("\"template\"").expect("template"), KapSource::Template);
    assert_eq!(kap("\"off\"").expect("off"), KapSource::Off);
    assert_eq!(kap("true").expect("old true"), KapSource::Llm);
    assert_eq!(kap("false").expect("old false"), KapSource::Template);
    let err = kap("\"none\"").expect_err("unknown");
    assert!(err.to_string().contains("expected `llm`, `template` or `off`"), "{err}");
}

#[test]
fn ablation_switches_that_contradict_each_other_are_refused() {
    let dir = project();
    let check = |extra: &str| parse(Path::new("d.toml"), &with_sections(extra), dir.path(), &Checks::default());
    let err = check("[ablation]\nkap = \"off\"\nglobal_text = \"kap\"\n").expect_err("no KAP to compare with");
    assert!(err.to_string().contains("`ablation.global_text`"), "{err}");
    check("[ablation]\nkap = \"off\"\nglobal_text = \"kap\"\nbranches = \"regional\"\n").expect("no global branch");
    let err = check("[ablation]\nclassifier = \"learned\"\n").expect_err("T* replaced");
    assert!(err.to_string().contains("use `semantic_to_visual` (the paper's Uni-D) or `none`"), "{err}");
    let uni_d = check("[ablation]\nclassifier = \"learned\"\nalignment = \"semantic_to_visual\"\n").expect("Uni-D");
    assert_eq!(uni_d.ablation.classifier, Classifier::Learned);
}

#[test]
fn warm_start_and_gate_keys_are_checked_together() {
    let dir = project();
    let good = GOOD.replace("lr = 1e-3", "lr = 1e-3\ninit = \"v3\"")
        + "\n[promote]\nmetric = \"top3.CF1\"\nweights = \"raw\"\n[notify]\ncommand = [\"true\"]\n";
    let c = parse(Path::new("demo.toml"), &good, dir.path(), &Checks::default()).expect("valid");
    assert_eq!(c.train.init, TrainInit::Model(crate::ModelReference::Version(3)));
    assert_eq!((c.promote.metric.as_str(), c.promote.weights), ("top3.CF1", ServedWeights::Raw));
    assert_eq!(c.promote.guard, ["CF1", "OF1"], "default guards");
    let json = serde_json::to_value(&c.train).expect("json");
    assert_eq!(json["init"], "v3");
    assert!(json.get("init_weights").is_none(), "unset: not part of the train key");

    let bad_init = GOOD.replace("lr = 1e-3", "lr = 1e-3\ninit = \"Current!\"");
    let err = parse(Path::new("demo.toml"), &bad_init, dir.path(), &Checks::default()).expect_err("invalid");
    assert!(err.to_string().contains("demo.toml:17:8: `train.init`: `Current!` is none of `scratch`"), "{err}");
    let bad = GOOD.replace("lr = 1e-3", "lr = 1e-3\ninit_weights = \"w.safetensors\"")
        + "\n[promote]\nmetric = \"accuracy\"\nguard = [\"mA\"]\nmin_delta = -1\n[notify]\ncommand = [\"\"]\n";
    let err = parse(Path::new("demo.toml"), &bad, dir.path(), &Checks::default()).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("`train.init_weights`: is set from `train.init`"), "{shown}");
    assert!(shown.contains("`promote.metric`: `accuracy` is not a metric"), "{shown}");
    assert!(shown.contains("`promote.guard.0`: `mA` is not a metric"), "pedestrian only: {shown}");
    assert!(shown.contains("`promote.min_delta`"), "{shown}");
    assert!(shown.contains("`notify.command`"), "{shown}");
    assert_eq!(TrainInit::parse("v0").expect_err("v0"), "`v0`: registry versions start at v1");
}

#[test]
fn executor_slurm_settings_and_per_stage_resources() {
    let dir = project();
    let text = format!(
        "{GOOD}\n[executor.slurm]\npartition = \"cpu\"\nargs = [\"--account=ml\"]\npoll_s = 0.5\n\
         [executor.slurm.train]\ngres = \"gpu:1\"\ncpus = 8\nmem = \"32G\"\n"
    );
    let c = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect("valid");
    let slurm = &c.executor.slurm;
    assert_eq!((slurm.partition.as_deref(), slurm.poll_s), (Some("cpu"), 0.5));
    assert_eq!(slurm.args, ["--account=ml"]);
    let train = &slurm.stages["train"];
    assert_eq!((train.gres.as_deref(), train.cpus, train.mem.as_deref()), (Some("gpu:1"), Some(8), Some("32G")));
    assert_eq!(slurm.stages.len(), 1, "the job-wide keys are no stages");

    // A misspelt resource is named with the ones that exist; a zero poll interval is refused.
    let text = format!("{GOOD}\n[executor.slurm.train]\ngpus = \"gpu:1\"\n");
    let err = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("unknown field `gpus`, expected one of `partition`, `gres`"), "{shown}");
    let text = format!("{GOOD}\n[executor.slurm]\npoll_s = 0\n");
    let err = parse(Path::new("d.toml"), &text, dir.path(), &Checks::default()).expect_err("invalid");
    assert!(err.to_string().contains("`executor.slurm.poll_s`"), "{err}");
}

#[test]
fn a_resolved_warm_start_is_in_the_typed_config_and_its_json_alike() {
    let dir = project();
    let path = dir.path().join("demo.toml");
    std::fs::write(&path, GOOD.replace("lr = 1e-3", "lr = 1e-3\ninit = \"current\"")).expect("write");
    let mut loaded = load(&path, &Checks::default()).expect("valid");
    assert!(loaded.json()["train"].get("init_weights").is_none(), "unresolved: not in the train key");
    let weights = PathBuf::from("work/demo/registry/v2/model_ema.safetensors");
    loaded.resolve_init_weights(Some(weights.clone()));
    assert_eq!(loaded.config.train.init_weights.as_ref(), Some(&weights));
    assert_eq!(*loaded.json(), serde_json::to_value(&loaded.config).expect("json"), "one value, two forms");
    assert_eq!(loaded.json()["train"]["init_weights"], "work/demo/registry/v2/model_ema.safetensors");
    loaded.resolve_init_weights(None);
    assert!(loaded.json()["train"].get("init_weights").is_none(), "from scratch again");
    assert_eq!(*loaded.json(), serde_json::to_value(&loaded.config).expect("json"));
}

#[test]
fn feature_dtypes_parse_and_an_unknown_one_names_the_key() {
    let dir = project();
    let checks = Checks::default();
    let config = parse(Path::new("d.toml"), GOOD, dir.path(), &checks).expect("valid");
    assert_eq!(config.features.dtype, FeatureDtype::F32, "exact by default");
    for (text, dtype) in [("f16", FeatureDtype::F16), ("bf16", FeatureDtype::Bf16), ("f32", FeatureDtype::F32)] {
        let set = overrides(&[&format!("features.dtype={text}")]);
        let config = parse_with_overrides(Path::new("d.toml"), GOOD, dir.path(), &checks, &set).expect("valid");
        assert_eq!(config.features.dtype, dtype);
    }
    let text = with_sections("[features]\ndtype = \"f64\"\nwidth = 2\n");
    let err = parse(Path::new("d.toml"), &text, dir.path(), &checks).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.contains("`features.dtype`") && shown.contains("f64"), "{shown}");
    assert!(shown.contains("unknown key `features.width`"), "{shown}");
}

#[test]
fn shard_encodings_resolve_auto_by_image_size_raw_stays_out_of_the_key_and_quality_is_checked() {
    let dir = project();
    let checks = Checks::default();
    let parse_set =
        |settings: &[&str]| parse_with_overrides(Path::new("d.toml"), GOOD, dir.path(), &checks, &overrides(settings));
    let config = parse_set(&["model.image_size=223"]).expect("valid");
    assert_eq!(config.data.shard_encoding, ShardEncoding::Raw, "auto: raw below 224 px");
    let json = serde_json::to_value(&config.data).expect("json");
    assert!(json.get("shard_encoding").is_none() && json.get("jpeg_quality").is_none(), "{json}");
    let config = parse_set(&["model.image_size=224"]).expect("valid");
    assert_eq!((config.data.shard_encoding, config.data.jpeg_quality()), (ShardEncoding::Jpeg, DEFAULT_JPEG_QUALITY));
    assert_eq!(serde_json::to_value(&config.data).expect("json")["shard_encoding"], "jpeg", "in the shard key");
    let config = parse_set(&["model.image_size=448", "data.shard_encoding=raw"]).expect("valid");
    assert_eq!(config.data.shard_encoding, ShardEncoding::Raw, "asked for");
    let config =
        parse_set(&["model.image_size=64", "data.shard_encoding=jpeg", "data.jpeg_quality=90"]).expect("valid");
    assert_eq!((config.data.shard_encoding, config.data.jpeg_quality()), (ShardEncoding::Jpeg, 90));
    let config = parse_set(&["model.image_size=448", "data.jpeg_quality=80"]).expect("valid");
    assert_eq!((config.data.shard_encoding, config.data.jpeg_quality()), (ShardEncoding::Jpeg, 80), "auto → jpeg");
    for (settings, expected) in [
        (&["data.shard_encoding=png", "data.jpeg_quality=90"][..], "the shards here are `png`"),
        (&["model.image_size=112", "data.jpeg_quality=90"][..], "the shards here are `raw`"),
        (&["data.shard_encoding=jpeg", "data.jpeg_quality=0"][..], "between 1 and 100, got 0"),
        (&["data.shard_encoding=webp"][..], "webp"),
    ] {
        let shown = parse_set(settings).expect_err("invalid").to_string();
        assert!(shown.contains(expected), "{settings:?}: {shown}");
    }
}
