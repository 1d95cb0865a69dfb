//! `sspa-pipe models`: the workspace's model registry — list, show, promote a version to an
//! alias, roll an alias back. Moves take the workspace lock and are recorded in
//! `models/decisions.jsonl` like the gate's own decisions.

use super::print_json;
use crate::cli::ConfigArgs;
use crate::exit::{self, UsageError};
use serde_json::{Value, json};
use sspa_registry::{CURRENT, Decision, DecisionKind, Reference, Registry};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Every version: created, run, served metric, labels, aliases, whether its files are intact.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        json: bool,
    },
    /// One version (`v3`) or the version an alias points at (default `current`): metrics,
    /// lineage, files.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// `v<N>` or an alias.
        #[arg(long = "model", value_name = "VERSION|ALIAS", default_value = CURRENT)]
        reference: String,
        #[arg(long)]
        json: bool,
    },
    /// Point an alias (default `current`) at a version, bypassing the gate (logged with the reason).
    Promote {
        #[command(flatten)]
        config: ConfigArgs,
        /// `v<N>`.
        #[arg(long, value_name = "VERSION")]
        version: String,
        #[arg(long, default_value = CURRENT)]
        alias: String,
        /// Why; recorded in `models/decisions.jsonl`.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Point an alias (default `current`) back at the version it pointed at before.
    Rollback {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, default_value = CURRENT)]
        alias: String,
        #[arg(long, value_name = "TEXT", default_value = "rollback")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn models(command: &ModelsCommand) -> anyhow::Result<u8> {
    match command {
        ModelsCommand::List { config, json } => list(config, *json),
        ModelsCommand::Show { config, reference, json } => show(config, reference, *json),
        ModelsCommand::Promote { config, version, alias, reason, json } => {
            promote(config, version, alias, reason, *json)
        }
        ModelsCommand::Rollback { config, alias, reason, json } => rollback(config, alias, reason, *json),
    }
}

fn registry(config: &ConfigArgs) -> anyhow::Result<(sspa_config::LoadedConfig, sspa_dag::Project, Registry)> {
    let (loaded, project) = crate::project::load(config)?;
    let registry = Registry::of_workspace(&project.workspace.root);
    Ok((loaded, project, registry))
}

fn served(metrics: &Value, weights: &str, metric: &str) -> Option<f64> {
    metrics.get(weights).and_then(|report| sspa_registry::metric(report, metric))
}

fn list(config: &ConfigArgs, json: bool) -> anyhow::Result<u8> {
    let (loaded, _, registry) = registry(config)?;
    let metric = &loaded.config.promote.metric;
    let aliases = registry.aliases()?;
    let mut rows = Vec::new();
    for number in registry.version_numbers()? {
        let pointing: Vec<&str> = aliases.iter().filter(|a| a.version == number).map(|a| a.alias.as_str()).collect();
        let row = match (registry.info(number), registry.version(number)) {
            (Ok(info), checked) => json!({
                "version": number,
                "created_at": info.created_at,
                "run_id": info.origin.run_id,
                "weights": info.origin.weights,
                "metric": format!("{}.{metric}", info.origin.weights),
                "value": served(&info.origin.metrics, &info.origin.weights, metric),
                "labels": info.origin.labels.len(),
                "aliases": pointing,
                "status": match checked { Ok(_) => "ok".to_owned(), Err(e) => format!("damaged: {e}") },
            }),
            (Err(e), _) => json!({"version": number, "aliases": pointing, "status": format!("damaged: {e}")}),
        };
        rows.push(row);
    }
    if json {
        print_json(&json!({"registry": registry.dir(), "versions": rows, "aliases": aliases}))?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        println!("no model in `{}` yet: `sspa-pipe retrain` promotes the first", registry.dir().display());
        return Ok(exit::OK);
    }
    println!(
        "{:<8} {:<21} {:<28} {:>10} {:>7}  {:<12} status",
        "version", "created", "run", metric, "labels", "aliases"
    );
    for row in &rows {
        let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or("-").to_owned();
        println!(
            "{:<8} {:<21} {:<28} {:>10} {:>7}  {:<12} {}",
            format!("v{}", row["version"]),
            text("created_at"),
            text("run_id"),
            row["value"].as_f64().map_or("-".into(), |v| format!("{v:.2}")),
            row["labels"].as_u64().map_or("-".into(), |v| v.to_string()),
            row["aliases"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
            text("status"),
        );
    }
    Ok(exit::OK)
}

fn show(config: &ConfigArgs, reference: &str, json: bool) -> anyhow::Result<u8> {
    let (loaded, _, registry) = registry(config)?;
    let version = registry.resolve(&Reference::parse(reference)?)?;
    let info = &version.info;
    if json {
        print_json(&json!({"dir": version.dir, "info": info}))?;
        return Ok(exit::OK);
    }
    let metric = &loaded.config.promote.metric;
    println!("v{} ({})  created {}  run {}", info.version, version.dir.display(), info.created_at, info.origin.run_id);
    println!("served weights: {}  train key: {}", info.origin.weights, info.origin.train_key);
    println!("labels ({}): {}", info.origin.labels.len(), info.origin.labels.join(", "));
    for weights in ["raw", "ema"] {
        if let Some(value) = served(&info.origin.metrics, weights, metric) {
            println!("{weights}.{metric}: {value:.2}");
        }
    }
    if let Value::Object(lineage) = &info.origin.lineage {
        for (key, value) in lineage {
            if let Some(text) = value.as_str() {
                println!("{key}: {text}");
            }
        }
    }
    for (name, file) in &info.files {
        println!("file {name}: {} bytes, BLAKE3 {}", file.size, &file.blake3[..16]);
    }
    Ok(exit::OK)
}

fn promote(config: &ConfigArgs, version: &str, alias: &str, reason: &str, json: bool) -> anyhow::Result<u8> {
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why the version is promoted".into()).into());
    }
    let Reference::Version(number) = Reference::parse(version)? else {
        return Err(UsageError(format!("--version takes `v<N>`, not the alias `{version}`")).into());
    };
    let (_, project, registry) = registry(config)?;
    let _lock = sspa_dag::WorkspaceLock::acquire(&project.workspace.root, "sspa-pipe models promote")?;
    let previous = registry.alias(alias)?.map(|a| a.version);
    registry.set_alias(alias, number, reason)?;
    let mut decision = Decision::new(DecisionKind::Forced, alias);
    decision.version = Some(number);
    decision.previous = previous;
    decision.reasons.push(format!("models promote: {reason}"));
    registry.record(&decision)?;
    report(&decision, json)
}

fn rollback(config: &ConfigArgs, alias: &str, reason: &str, json: bool) -> anyhow::Result<u8> {
    let (_, project, registry) = registry(config)?;
    let _lock = sspa_dag::WorkspaceLock::acquire(&project.workspace.root, "sspa-pipe models rollback")?;
    let previous = registry.alias(alias)?.map(|a| a.version);
    let moved = registry.rollback(alias, reason)?;
    let mut decision = Decision::new(DecisionKind::RolledBack, alias);
    decision.version = Some(moved.version);
    decision.previous = previous;
    decision.reasons.push(format!("models rollback: {reason}"));
    registry.record(&decision)?;
    report(&decision, json)
}

fn report(decision: &Decision, json: bool) -> anyhow::Result<u8> {
    if json {
        print_json(decision)?;
    } else {
        println!(
            "{} now points at v{} (was {})",
            decision.alias,
            decision.version.unwrap_or(0),
            decision.previous.map_or("unset".into(), |v| format!("v{v}"))
        );
    }
    Ok(exit::OK)
}
