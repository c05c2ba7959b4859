//! The parts of the appc pod and image manifests the stage1 reads (appc spec 0.8.11,
//! contract §5.1). Unknown fields are ignored, as rkt's schema types do.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// `$pod/pod`.
#[derive(Clone, Debug, Deserialize)]
pub struct PodManifest {
    /// `acKind`: must be `PodManifest`.
    #[serde(rename = "acKind")]
    pub ac_kind: String,
    /// The pod's apps.
    #[serde(default)]
    pub apps: Vec<RuntimeApp>,
}

/// One app of the pod manifest.
#[derive(Clone, Debug, Deserialize)]
pub struct RuntimeApp {
    /// The app's name (an AC name).
    pub name: String,
    /// Overrides of the image's app (absent → the image's `app`, contract §5.1).
    #[serde(default)]
    pub app: Option<App>,
}

/// An image manifest (`$s1/opt/stage2/<app>/manifest`).
#[derive(Clone, Debug, Deserialize)]
pub struct ImageManifest {
    /// `acKind`: must be `ImageManifest`.
    #[serde(rename = "acKind")]
    pub ac_kind: String,
    /// The app it runs.
    #[serde(default)]
    pub app: Option<App>,
}

/// What to run.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct App {
    /// Program and arguments.
    #[serde(default)]
    pub exec: Vec<String>,
    /// User: `root`, a number, a name or a path (contract §5.4).
    #[serde(default)]
    pub user: String,
    /// Group: same rules.
    #[serde(default)]
    pub group: String,
    /// Supplementary gids.
    #[serde(default, rename = "supplementaryGIDs")]
    pub supplementary_gids: Vec<u32>,
    /// Working directory (default `/`).
    #[serde(default, rename = "workingDirectory")]
    pub working_directory: String,
    /// Environment, in order.
    #[serde(default)]
    pub environment: Vec<EnvVar>,
    /// Isolators (resource limits among them).
    #[serde(default)]
    pub isolators: Vec<Isolator>,
}

/// One environment variable.
#[derive(Clone, Debug, Deserialize)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// An isolator: name and free-form value.
#[derive(Clone, Debug, Deserialize)]
pub struct Isolator {
    /// e.g. `resource/memory`.
    pub name: String,
    /// e.g. `{"limit": "25Mi"}`.
    #[serde(default)]
    pub value: BTreeMap<String, serde_json::Value>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<T, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("reading the {what} {}: {e}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| format!("the {what} {} is malformed: {e}", path.display()))
}

impl PodManifest {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let pod: Self = read_json(path, "pod manifest")?;
        if pod.ac_kind != "PodManifest" {
            return Err(format!(
                "the pod manifest {} has acKind {:?}, not PodManifest",
                path.display(),
                pod.ac_kind
            ));
        }
        if pod.apps.is_empty() {
            return Err(format!("the pod manifest {} has no apps", path.display()));
        }
        Ok(pod)
    }
}

impl ImageManifest {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let image: Self = read_json(path, "image manifest")?;
        if image.ac_kind != "ImageManifest" {
            return Err(format!(
                "the image manifest {} has acKind {:?}, not ImageManifest",
                path.display(),
                image.ac_kind
            ));
        }
        Ok(image)
    }
}

/// Parses a resource quantity as appc/Kubernetes write them (`25Mi`, `1G`, `800m`, `2`)
/// into a number of base units, rounding up (contract §6.3: `Quantity.Value()`).
pub fn quantity(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let scaled = (value * factor).ceil();
    (0.0..1.8e19).contains(&scaled).then(|| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let v = scaled as u64; // bounded and non-negative just above
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_round_up_like_kubernetes_value() {
        assert_eq!(quantity("25Mi"), Some(25 * 1024 * 1024));
        assert_eq!(quantity("1G"), Some(1_000_000_000));
        assert_eq!(quantity("800m"), Some(1));
        assert_eq!(quantity("1500m"), Some(2));
        assert_eq!(quantity("2"), Some(2));
        assert_eq!(quantity("lots"), None);
        assert_eq!(quantity("5Xi"), None);
    }

    #[test]
    fn manifests_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pod");
        std::fs::write(&pod, r#"{"acVersion":"0.8.11","acKind":"PodManifest","apps":[{"name":"hello","image":{"id":"sha512-x"},"app":{"exec":["/hello"],"user":"0","group":"0"}}]}"#).unwrap();
        let manifest = PodManifest::read(&pod).unwrap();
        assert_eq!(manifest.apps[0].name, "hello");
        assert_eq!(manifest.apps[0].app.as_ref().unwrap().exec, ["/hello"]);
        std::fs::write(&pod, r#"{"acKind":"ImageManifest","apps":[]}"#).unwrap();
        assert!(PodManifest::read(&pod)
            .unwrap_err()
            .contains("not PodManifest"));
        std::fs::write(&pod, "{").unwrap();
        assert!(PodManifest::read(&pod).unwrap_err().contains("malformed"));
        assert!(PodManifest::read(&dir.path().join("nope"))
            .unwrap_err()
            .contains("No such file"));
    }
}
