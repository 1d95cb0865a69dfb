//! The domain's ordered label list, from whichever source `[labels]` names.

use sspa_config::{DataSection, LabelsSection};
use sspa_describe::LabelList;
use std::path::Path;

/// Resolves `[labels]`: inline names, a label file, or (the default) the data manifest's list.
pub fn resolve(labels: &LabelsSection, data: &DataSection, project_root: &Path) -> Result<LabelList, crate::Error> {
    if let Some(names) = &labels.names {
        return Ok(LabelList::from_names("labels.names", names)?);
    }
    if let Some(file) = &labels.file {
        return Ok(sspa_describe::read_label_file(&project_root.join(file))?);
    }
    let manifest_path = project_root.join(&data.manifest);
    let manifest = sspa_data::Manifest::load(&manifest_path)?;
    let root = sspa_data::data_root(data, project_root);
    let names = sspa_data::import::resolve_labels(&manifest, &root)?;
    Ok(LabelList::from_names(&manifest_path.display().to_string(), &names)?)
}
