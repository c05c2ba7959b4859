//! appc schema types (image and pod manifests) with the validation rkt applies.
//!
//! Field order and null/omitted behaviour follow appc spec 0.8.11's Go structs
//! (`schema/image.go`, `schema/pod.go`, `schema/types/*.go`), so the pod manifest minirkt
//! writes is byte-for-byte the shape rkt v1.30 writes (e.g. `"volumes":null` when no volume
//! is given). Isolators are kept as raw JSON values: stage0 passes them through.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `acKind` of an image manifest.
pub const IMAGE_MANIFEST_KIND: &str = "ImageManifest";
/// `acKind` of a pod manifest.
pub const POD_MANIFEST_KIND: &str = "PodManifest";
/// rkt v1.30 writes its own version as the pod manifest's `acVersion`
/// (`stage0/run.go` `generatePodManifest`: `types.NewSemVer(version.Version)`).
pub const RKT_VERSION: &str = "1.30.0";

/// A JSON value kept as compacted text in its original key order: what Go's
/// `json.RawMessage` gives rkt for isolator values (stage0 passes them through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(String);

impl RawJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Removes insignificant whitespace (Go's encoder compacts a `RawMessage`).
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(self.0.clone())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(RawJson(compact_json(raw.get())))
    }
}

/// An isolator (appc `types.Isolator`: a name and a raw value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolator {
    /// Isolator name (`resource/memory`, …).
    pub name: String,
    /// Its value, untouched.
    pub value: Option<RawJson>,
}

/// A name/value pair: labels, annotations and environment variables share this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    /// The name (an AC identifier for labels and annotations).
    pub name: String,
    /// The value.
    pub value: String,
}

/// Looks a name up in a name/value list.
pub fn lookup<'a>(list: &'a [NameValue], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|nv| nv.name == name)
        .map(|nv| nv.value.as_str())
}

/// Sets `name` to `value`, replacing an existing entry or appending (appc
/// `Environment.Set`, `Annotations.Set`).
pub fn set(list: &mut Vec<NameValue>, name: &str, value: &str) {
    match list.iter_mut().find(|nv| nv.name == name) {
        Some(nv) => nv.value = value.to_string(),
        None => list.push(NameValue {
            name: name.to_string(),
            value: value.to_string(),
        }),
    }
}

/// An event handler (`pre-start`, `post-stop`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventHandler {
    /// Handler name.
    pub name: String,
    /// Command to run.
    pub exec: Option<Vec<String>>,
}

/// A mount point an image declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    /// Volume name it expects.
    pub name: String,
    /// Path in the app.
    pub path: String,
    /// Read-only request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// A port an image declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port name.
    pub name: String,
    /// Protocol (`tcp`, `udp`).
    pub protocol: String,
    /// Port number.
    pub port: u32,
    /// Number of consecutive ports.
    #[serde(default)]
    pub count: u32,
    /// Socket activation requested.
    #[serde(default)]
    pub socket_activated: bool,
}

/// The `app` section of an image manifest or of a pod manifest's runtime app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// Command line; `null` when absent (Go `Exec []string` has no `omitempty`).
    #[serde(default)]
    pub exec: Option<Vec<String>>,
    /// Event handlers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_handlers: Vec<EventHandler>,
    /// User (name, number, or path).
    #[serde(default)]
    pub user: String,
    /// Group (name, number, or path).
    #[serde(default)]
    pub group: String,
    /// Supplementary groups.
    #[serde(
        default,
        rename = "supplementaryGIDs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub supplementary_gids: Vec<i64>,
    /// Working directory (absolute).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_directory: String,
    /// Environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<NameValue>,
    /// Mount points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Isolators, passed through untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolators: Vec<Isolator>,
    /// User annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_annotations: BTreeMap<String, String>,
    /// User labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_labels: BTreeMap<String, String>,
}

/// An image manifest (appc `schema.ImageManifest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Must be `ImageManifest`.
    pub ac_kind: String,
    /// appc spec version (semver).
    pub ac_version: String,
    /// Image name (AC identifier).
    pub name: String,
    /// Labels (`version`, `os`, `arch`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<NameValue>,
    /// App section; absent for stage1 images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    /// Annotations (the stage1 entrypoints live here, contract §1.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<NameValue>,
    /// Dependencies (minirkt refuses images that have any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Value>,
    /// Path whitelist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_whitelist: Vec<String>,
}

/// A volume of a pod (appc `types.Volume`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Volume name (AC name).
    pub name: String,
    /// `host` or `empty`.
    pub kind: String,
    /// Host path (host volumes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Read-only flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Recursive bind flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    /// Mode of an empty volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Owner of an empty volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    /// Group of an empty volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<i64>,
}

/// A mount of a volume into an app (appc `schema.Mount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Volume name.
    pub volume: String,
    /// Path inside the app.
    pub path: String,
    /// Inline volume (CRI style); minirkt never writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_volume: Option<Volume>,
}

/// The image reference of a runtime app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeImage {
    /// Image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image ID (`sha512-…`).
    pub id: String,
    /// Image labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<NameValue>,
}

/// An app of a pod manifest (appc `schema.RuntimeApp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeApp {
    /// App name (AC name).
    pub name: String,
    /// Image reference.
    pub image: RuntimeImage,
    /// App section (the image's, with stage0's overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    /// Read-only root filesystem.
    #[serde(
        default,
        rename = "readOnlyRootFS",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub read_only_root_fs: bool,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<NameValue>,
}

/// A pod manifest (appc `schema.PodManifest`). Go's nil slices marshal as `null`, hence
/// the `Option`s without `skip_serializing_if`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodManifest {
    /// appc version (rkt writes its own version).
    pub ac_version: String,
    /// Must be `PodManifest`.
    pub ac_kind: String,
    /// Apps.
    #[serde(default)]
    pub apps: Vec<RuntimeApp>,
    /// Volumes (`null` when none, as rkt writes).
    #[serde(default)]
    pub volumes: Option<Vec<Volume>>,
    /// Pod isolators (`null` when none).
    #[serde(default)]
    pub isolators: Option<Vec<Isolator>>,
    /// Pod annotations.
    #[serde(default)]
    pub annotations: Option<Vec<NameValue>>,
    /// Exposed ports (`null` when none).
    #[serde(default)]
    pub ports: Option<Vec<Value>>,
    /// User annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_annotations: BTreeMap<String, String>,
    /// User labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_labels: BTreeMap<String, String>,
}

/// Whether `s` is a valid AC name (`^[a-z0-9]+([-][a-z0-9]+)*$`, appc `types.ACName`).
pub fn is_ac_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// Whether `s` is a valid AC identifier (`^[a-z0-9]+([-._~/][a-z0-9]+)*$`).
pub fn is_ac_identifier(s: &str) -> bool {
    let sep = |b: u8| matches!(b, b'-' | b'.' | b'_' | b'~' | b'/');
    let bytes = s.as_bytes();
    if bytes.is_empty() || sep(bytes[0]) || sep(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut prev_sep = false;
    for &b in bytes {
        if sep(b) {
            if prev_sep {
                return false;
            }
            prev_sep = true;
        } else if b.is_ascii_lowercase() || b.is_ascii_digit() {
            prev_sep = false;
        } else {
            return false;
        }
    }
    true
}

/// appc `SanitizeACName`: lowercase, every invalid character becomes `-`, leading and
/// trailing dashes are removed.
pub fn sanitize_ac_name(s: &str) -> Option<String> {
    let replaced: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = replaced.trim_matches('-');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// rkt's `common.ImageNameToAppName`: the sanitized last `/`-separated segment of the image
/// name is the default app name.
pub fn image_name_to_app_name(image_name: &str) -> Option<String> {
    let last = image_name.rsplit('/').next().unwrap_or(image_name);
    sanitize_ac_name(last)
}

/// Whether `s` is a semantic version with a non-zero value (appc `types.SemVer`).
pub fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts.iter().any(|p| p.bytes().any(|b| b != b'0'))
}

/// appc `types.ValidOSArch` (label validation of any image manifest).
const APPC_OS_ARCH: &[(&str, &[&str])] = &[
    (
        "linux",
        &[
            "amd64",
            "i386",
            "aarch64",
            "aarch64_be",
            "armv6l",
            "armv7l",
            "armv7b",
            "ppc64",
            "ppc64le",
            "s390x",
        ],
    ),
    ("freebsd", &["amd64", "i386", "arm"]),
    ("darwin", &["x86_64", "i386"]),
];

/// rkt's stricter `stage0.ValidOSArch`, applied to app images (`stage0/arch.go`).
const STAGE0_OS_ARCH: &[(&str, &[&str])] = &[(
    "linux",
    &[
        "amd64",
        "i386",
        "aarch64",
        "aarch64_be",
        "armv6l",
        "armv7l",
        "armv7b",
        "ppc64le",
    ],
)];

/// appc `IsValidOSArch`.
fn check_os_arch(labels: &[NameValue], table: &[(&str, &[&str])]) -> Result<(), String> {
    let Some(os) = lookup(labels, "os") else {
        return Ok(());
    };
    let Some((_, archs)) = table.iter().find(|(o, _)| *o == os) else {
        let mut oses: Vec<&str> = table.iter().map(|(o, _)| *o).collect();
        oses.sort_unstable();
        return Err(format!("bad os {os:?} (must be one of: {oses:?})"));
    };
    match lookup(labels, "arch") {
        Some(arch) if !archs.contains(&arch) => Err(format!(
            "bad arch {arch:?} for {os} (must be one of: {archs:?})"
        )),
        _ => Ok(()),
    }
}

impl ImageManifest {
    /// Parses and validates an image manifest the way appc's `UnmarshalJSON` does.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: ImageManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        m.validate()?;
        Ok(m)
    }

    /// appc schema validation: kind, version, name, labels (unique, not `name`, valid
    /// os/arch), annotation names, app section (user and group required, absolute
    /// working directory).
    pub fn validate(&self) -> Result<(), String> {
        if self.ac_kind != IMAGE_MANIFEST_KIND {
            return Err(format!("acKind must be {IMAGE_MANIFEST_KIND:?}"));
        }
        if !is_semver(&self.ac_version) {
            return Err(format!("acVersion {:?} is not a semver", self.ac_version));
        }
        if !is_ac_identifier(&self.name) {
            return Err(format!("name {:?} is not a valid AC identifier", self.name));
        }
        let mut seen = Vec::new();
        for label in &self.labels {
            if label.name == "name" {
                return Err("invalid label name: \"name\"".into());
            }
            if !is_ac_identifier(&label.name) {
                return Err(format!("label name {:?} is invalid", label.name));
            }
            if seen.contains(&label.name.as_str()) {
                return Err(format!("duplicate labels of name {:?}", label.name));
            }
            seen.push(label.name.as_str());
        }
        check_os_arch(&self.labels, APPC_OS_ARCH)?;
        for a in &self.annotations {
            if !is_ac_identifier(&a.name) {
                return Err(format!("annotation name {:?} is invalid", a.name));
            }
        }
        if let Some(app) = &self.app {
            if app.user.is_empty() {
                return Err("user is required".into());
            }
            if app.group.is_empty() {
                return Err("group is required".into());
            }
            if !app.working_directory.is_empty() && !app.working_directory.starts_with('/') {
                return Err("workingDirectory must be an absolute path".into());
            }
        }
        Ok(())
    }

    /// The stricter check stage0 applies to app images (`stage0/run.go`
    /// `prepareAppImage`): `os` and `arch` labels present and in stage0's list.
    pub fn check_app_os_arch(&self) -> Result<(), String> {
        if lookup(&self.labels, "os").is_none() {
            return Err("missing os label in the image manifest".into());
        }
        if lookup(&self.labels, "arch").is_none() {
            return Err("missing arch label in the image manifest".into());
        }
        check_os_arch(&self.labels, STAGE0_OS_ARCH)
    }

    /// Value of a label.
    pub fn label(&self, name: &str) -> Option<&str> {
        lookup(&self.labels, name)
    }

    /// Value of an annotation.
    pub fn annotation(&self, name: &str) -> Option<&str> {
        lookup(&self.annotations, name)
    }
}

impl PodManifest {
    /// Parses and validates a pod manifest (kind, version, app names).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: PodManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.ac_kind != POD_MANIFEST_KIND {
            return Err(format!("acKind must be {POD_MANIFEST_KIND:?}"));
        }
        if !is_semver(&m.ac_version) {
            return Err(format!("acVersion {:?} is not a semver", m.ac_version));
        }
        for app in &m.apps {
            if !is_ac_name(&app.name) {
                return Err(format!("app name {:?} is not a valid AC name", app.name));
            }
        }
        Ok(m)
    }
}

impl Volume {
    /// Parses rkt's `--volume` syntax (`NAME,kind=host,source=PATH[,readOnly=BOOL]…`,
    /// appc `types.VolumeFromString`), filling the `empty` defaults and validating.
    pub fn parse_cli(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(',');
        let name = parts.next().unwrap_or_default().to_string();
        let mut v = Volume {
            name,
            kind: String::new(),
            source: String::new(),
            read_only: None,
            recursive: None,
            mode: None,
            uid: None,
            gid: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("volume parameter {part:?} is not key=value"))?;
            if seen.contains(&key) {
                return Err(format!("label {key} with multiple values"));
            }
            seen.push(key);
            let parse_bool = |s: &str| parse_go_bool(s).ok_or_else(|| format!("bad bool {s:?}"));
            let parse_int = |s: &str| s.parse::<i64>().map_err(|e| format!("{s:?}: {e}"));
            match key {
                "kind" => v.kind = value.to_string(),
                "source" => v.source = value.to_string(),
                "readOnly" => v.read_only = Some(parse_bool(value)?),
                "recursive" => v.recursive = Some(parse_bool(value)?),
                "mode" => v.mode = Some(value.to_string()),
                "uid" => v.uid = Some(parse_int(value)?),
                "gid" => v.gid = Some(parse_int(value)?),
                _ => return Err(format!("unknown volume parameter {key:?}")),
            }
        }
        if !is_ac_name(&v.name) {
            return Err(format!("volume name {:?} is not a valid AC name", v.name));
        }
        if v.kind == "empty" {
            v.mode.get_or_insert_with(|| "0755".to_string());
            v.uid.get_or_insert(0);
            v.gid.get_or_insert(0);
        }
        v.validate()?;
        Ok(v)
    }

    /// appc `Volume.assertValid`.
    pub fn validate(&self) -> Result<(), String> {
        match self.kind.as_str() {
            "empty" => {
                if !self.source.is_empty() {
                    return Err("source for empty volume must be empty".into());
                }
                Ok(())
            }
            "host" => {
                if self.source.is_empty() {
                    return Err("source for host volume cannot be empty".into());
                }
                if self.mode.is_some() || self.uid.is_some() || self.gid.is_some() {
                    return Err("mode/uid/gid for host volume cannot be set".into());
                }
                if !self.source.starts_with('/') {
                    return Err("source for host volume must be absolute path".into());
                }
                Ok(())
            }
            _ => Err(r#"unrecognized volume kind: should be one of "empty", "host""#.into()),
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_ac_name("busybox"));
        assert!(is_ac_name("a-1"));
        assert!(!is_ac_name("-a"));
        assert!(!is_ac_name("a--b"));
        assert!(!is_ac_name("A"));
        assert!(is_ac_identifier("example.com/hello_world~1"));
        assert!(!is_ac_identifier("example.com//x"));
        assert!(!is_ac_identifier("/x"));
        assert_eq!(
            image_name_to_app_name("example.com/My_App").as_deref(),
            Some("my-app")
        );
        assert_eq!(image_name_to_app_name("___"), None);
    }

    #[test]
    fn semver() {
        assert!(is_semver("0.8.11"));
        assert!(is_semver("1.0.0-alpha+build"));
        assert!(!is_semver("0.0.0"));
        assert!(!is_semver("1.0"));
    }

    #[test]
    fn image_manifest_validation() {
        let ok = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x",
            "labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}],
            "app":{"exec":["/bin/true"],"user":"0","group":"0"}}"#;
        let m = ImageManifest::parse(ok).unwrap();
        m.check_app_os_arch().unwrap();
        let bad_kind = br#"{"acKind":"PodManifest","acVersion":"0.8.11","name":"x"}"#;
        assert!(ImageManifest::parse(bad_kind).is_err());
        let bad_arch = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"x",
            "labels":[{"name":"os","value":"linux"},{"name":"arch","value":"z80"}]}"#;
        assert!(ImageManifest::parse(bad_arch)
            .unwrap_err()
            .contains("bad arch"));
        let no_user = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"x",
            "app":{"exec":["/x"],"group":"0"}}"#;
        assert!(ImageManifest::parse(no_user).is_err());
        let no_os = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"x"}"#;
        assert!(ImageManifest::parse(no_os)
            .unwrap()
            .check_app_os_arch()
            .is_err());
    }

    #[test]
    fn isolators_keep_their_raw_value() {
        let app: App = serde_json::from_str(
            r#"{"exec":null,"user":"0","group":"0","isolators":[{"name":"resource/memory","value":{ "request": "1G", "limit": "2G" }}]}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&app).unwrap(),
            r#"{"exec":null,"user":"0","group":"0","isolators":[{"name":"resource/memory","value":{"request":"1G","limit":"2G"}}]}"#
        );
        assert_eq!(compact_json(r#"{ "a b" : "c\" d" }"#), r#"{"a b":"c\" d"}"#);
    }

    #[test]
    fn volumes() {
        let v = Volume::parse_cli("data,kind=host,source=/srv,readOnly=true").unwrap();
        assert_eq!(v.read_only, Some(true));
        let e = Volume::parse_cli("scratch,kind=empty").unwrap();
        assert_eq!(
            (e.mode.as_deref(), e.uid, e.gid),
            (Some("0755"), Some(0), Some(0))
        );
        assert!(Volume::parse_cli("x,kind=host,source=rel").is_err());
        assert!(Volume::parse_cli("x,kind=weird").is_err());
        assert!(Volume::parse_cli("x,kind=host,source=/a,bogus=1").is_err());
    }

    #[test]
    fn pod_manifest_nulls_like_go() {
        let pm = PodManifest {
            ac_version: RKT_VERSION.into(),
            ac_kind: POD_MANIFEST_KIND.into(),
            apps: vec![],
            volumes: None,
            isolators: None,
            annotations: None,
            ports: None,
            user_annotations: BTreeMap::new(),
            user_labels: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_string(&pm).unwrap(),
            r#"{"acVersion":"1.30.0","acKind":"PodManifest","apps":[],"volumes":null,"isolators":null,"annotations":null,"ports":null}"#
        );
    }
}
