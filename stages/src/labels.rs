//! The domain's ordered label list, from whichever source `[labels]` names.

use serde::{Deserialize, Serialize};
use sspa_config::LabelsSection;
use sspa_describe::LabelList;
use std::path::{Path, PathBuf};

/// `data.manifest`, `data.root`, `data.root_env`: where the dataset (and its label list) is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataLocation {
    pub manifest: PathBuf,
    pub root: Option<PathBuf>,
    pub root_env: Option<String>,
}

impl DataLocation {
    /// The location keys of a `[data]` section.
    pub fn of(data: &sspa_config::DataSection) -> Self {
        Self { manifest: data.manifest.clone(), root: data.root.clone(), root_env: data.root_env.clone() }
    }
}

/// Resolves `[labels]`: inline names, a label file, or (the default) the data manifest's list.
///
/// # Errors
/// An unreadable label file or manifest, or a label list with problems (each named).
pub fn resolve(labels: &LabelsSection, data: &DataLocation, project_root: &Path) -> Result<LabelList, crate::Error> {
    if let Some(names) = &labels.names {
        return Ok(LabelList::from_names("labels.names", names)?);
    }
    if let Some(file) = &labels.file {
        return Ok(sspa_describe::read_label_file(&project_root.join(file))?);
    }
    let manifest_path = project_root.join(&data.manifest);
    let manifest = sspa_data::Manifest::load(&manifest_path)?;
    let root = sspa_data::data_root_at(data.root.as_deref(), data.root_env.as_deref(), project_root);
    let names = sspa_data::import::resolve_labels(&manifest, &root)?;
    Ok(LabelList::from_names(&manifest_path.display().to_string(), &names)?)
}
