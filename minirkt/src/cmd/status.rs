//! `status` and `list`, reading the pod exactly where rkt reads it (contract §4.1, §4.2).

use std::time::{SystemTime, UNIX_EPOCH};

use super::{warn, Globals};
use crate::error::{Error, Result};
use crate::pod::{NetInfo, Pod};
use crate::state::{Dir, State};

/// Go's `time.Format("2006-01-02 15:04:05.999 -0700 MST")` in local time; `None` is Go's
/// zero time.
pub fn format_time(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01 00:00:00 +0000 UTC".into();
    };
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(_) => (0, 0),
    };
    let Some(tm) = local_tm(secs) else {
        return format!("@{secs}");
    };
    let millis = nanos / 1_000_000;
    // `.999`: milliseconds with trailing zeros (and the dot) removed.
    let frac = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}").trim_end_matches('0').to_string()
    };
    let off = tm.gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac} {sign}{:02}{:02} {}",
        tm.year,
        tm.mon,
        tm.mday,
        tm.hour,
        tm.min,
        tm.sec,
        off / 3600,
        (off % 3600) / 60,
        tm.zone
    )
}

struct LocalTm {
    year: i64,
    mon: i64,
    mday: i64,
    hour: i64,
    min: i64,
    sec: i64,
    gmtoff: i64,
    zone: String,
}

fn local_tm(secs: i64) -> Option<LocalTm> {
    let t: libc::time_t = secs;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is the
    // reentrant variant and writes only into `tm`.
    let res = unsafe { libc::localtime_r(&t, &mut tm) };
    if res.is_null() {
        return None;
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: tm_zone points to a NUL-terminated string owned by the C library's
        // timezone data, valid at least until the next tzset.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    Some(LocalTm {
        year: i64::from(tm.tm_year) + 1900,
        mon: i64::from(tm.tm_mon) + 1,
        mday: i64::from(tm.tm_mday),
        hour: i64::from(tm.tm_hour),
        min: i64::from(tm.tm_min),
        sec: i64::from(tm.tm_sec),
        gmtoff: tm.tm_gmtoff,
        zone,
    })
}

/// go-humanize's `Time` ("3 minutes ago").
pub fn humanize(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "a long while ago".into();
    };
    let unix = |t: SystemTime| match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let (then, now) = (unix(t), unix(SystemTime::now()));
    let (diff, lbl) = if then > now {
        (then - now, "from now")
    } else {
        (now - then, "ago")
    };
    const MIN: i64 = 60;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    const WEEK: i64 = 7 * DAY;
    const MONTH: i64 = 30 * DAY;
    const YEAR: i64 = 12 * MONTH;
    match diff {
        d if d < 1 => "now".into(),
        d if d < 2 => format!("1 second {lbl}"),
        d if d < MIN => format!("{d} seconds {lbl}"),
        d if d < 2 * MIN => format!("1 minute {lbl}"),
        d if d < HOUR => format!("{} minutes {lbl}", d / MIN),
        d if d < 2 * HOUR => format!("1 hour {lbl}"),
        d if d < DAY => format!("{} hours {lbl}", d / HOUR),
        d if d < 2 * DAY => format!("1 day {lbl}"),
        d if d < WEEK => format!("{} days {lbl}", d / DAY),
        d if d < 2 * WEEK => format!("1 week {lbl}"),
        d if d < MONTH => format!("{} weeks {lbl}", d / WEEK),
        d if d < 2 * MONTH => format!("1 month {lbl}"),
        d if d < YEAR => format!("{} months {lbl}", d / MONTH),
        d if d < 18 * MONTH => format!("1 year {lbl}"),
        d if d < 2 * YEAR => format!("2 years {lbl}"),
        d if d < 37 * YEAR => format!("{} years {lbl}", d / YEAR),
        _ => format!("a long while {lbl}"),
    }
}

/// rkt `fmtNets`: `name:ip4=IP, …`.
pub fn fmt_nets(nets: &[NetInfo]) -> String {
    nets.iter()
        .map(|n| format!("{}:ip4={}", n.net_name, n.ip_display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `status` text, one `key=value` per line (rkt `printStatus`).
pub fn status_lines(pod: &Pod) -> Result<Vec<String>> {
    let state = pod.state();
    let mut out = vec![format!("state={state}")];
    let created = pod.creation_time().map_err(|e| {
        Error::Other(format!(
            "unable to get creation time for pod {:?}: {e}",
            pod.uuid
        ))
    })?;
    out.push(format!("created={}", format_time(created)));
    let started = pod.start_time().map_err(|e| {
        Error::Other(format!(
            "unable to get start time for pod {:?}: {e}",
            pod.uuid
        ))
    })?;
    if started.is_some() {
        out.push(format!("started={}", format_time(started)));
    }
    if matches!(state, State::Running | State::Exited) {
        out.push(format!("networks={}", fmt_nets(&pod.nets)));
    }
    if !matches!(
        state,
        State::Running
            | State::Deleting
            | State::ExitedDeleting
            | State::Exited
            | State::ExitedGarbage
    ) {
        return Ok(out);
    }
    // The pid file may not be written yet, or never (stage1 failed early).
    if let Ok(pid) = pod.pid() {
        out.push(format!("pid={pid}"));
    }
    out.push(format!(
        "exited={}",
        matches!(state, State::Exited | State::ExitedGarbage)
    ));
    if state != State::Running {
        let manifest = pod.manifest().map_err(|e| {
            Error::Other(format!(
                "unable to get exit statuses for pod {:?}: {e}",
                pod.uuid
            ))
        })?;
        // Apps without a status file are silently omitted (contract §4.1).
        for app in &manifest.apps {
            if let Ok(code) = pod.app_exit_code(&app.name) {
                out.push(format!("app-{}={code}", app.name));
            }
        }
    }
    Ok(out)
}

/// `minirkt status UUID`.
pub fn status(g: &Globals, uuid: &str) -> Result<()> {
    let pods = g.pods()?;
    let pod = pods
        .resolve_uuid(uuid)
        .and_then(|u| Pod::load(&pods, &u))
        .map_err(|e| Error::Other(format!("problem retrieving pod: {e}")))?;
    let lines =
        status_lines(&pod).map_err(|e| Error::Other(format!("unable to print status: {e}")))?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// Go's `text/tabwriter` with minwidth 0, tabwidth 8, padding 1, padchar `\t`: every
/// tab-terminated cell is padded with tabs to the column width rounded up to 8.
pub fn tabwrite(rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncols];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + 1);
        }
    }
    for w in &mut widths {
        *w = w.div_ceil(8) * 8;
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let len = cell.chars().count();
                let tabs = (widths[i].saturating_sub(len)).div_ceil(8).max(1);
                out.push_str(&"\t".repeat(tabs));
            }
        }
        out.push('\n');
    }
    out
}

/// `minirkt list [--full] [--no-legend]` (rkt `runList`, tabbed format).
pub fn list(g: &Globals, full: bool, no_legend: bool) -> Result<()> {
    let pods = g.pods()?;
    let mut rows: Vec<Vec<String>> = Vec::new();
    if !no_legend {
        let mut h = vec!["UUID", "APP", "IMAGE NAME"];
        if full {
            h.push("IMAGE ID");
        }
        h.extend(["STATE", "CREATED", "STARTED", "NETWORKS"]);
        rows.push(h.into_iter().map(String::from).collect());
    }
    let mut errors = Vec::new();
    for uuid in pods.list(&Dir::MOST)? {
        let pod = match Pod::load(&pods, &uuid) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipping {uuid:?}: {e}");
                continue;
            }
        };
        let apps = if pod.state().manifest_available() {
            match pod.manifest() {
                Ok(m) => m.apps,
                Err(e) => {
                    errors.push(format!("Unable to read pod {uuid} manifest:\n  {e}"));
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        let when = |t| if full { format_time(t) } else { humanize(t) };
        let created = pod.creation_time().unwrap_or(None);
        let started = pod.start_time().unwrap_or(None);
        let pod_cols = [
            if full {
                uuid.clone()
            } else {
                uuid.chars().take(8).collect()
            },
            pod.state().to_string(),
            when(created),
            if started.is_some() {
                when(started)
            } else {
                String::new()
            },
            fmt_nets(&pod.nets),
        ];
        let mut app_rows: Vec<(String, String, String)> = Vec::new();
        for a in &apps {
            let image = match pod.app_image_manifest(&a.name) {
                Ok(m) => match m.label("version") {
                    Some(v) => format!("{}:{v}", m.name),
                    None => m.name,
                },
                Err(e) => {
                    errors.push(format!("pod {uuid} ImageManifest could not be loaded: {e}"));
                    "--".into()
                }
            };
            let id = if full {
                a.image.id.chars().take(19).collect()
            } else {
                String::new()
            };
            app_rows.push((a.name.clone(), image, id));
        }
        if app_rows.is_empty() {
            app_rows.push(("-".into(), "-".into(), "-".into()));
        }
        for (i, (app, image, id)) in app_rows.into_iter().enumerate() {
            // Only the first line of a pod carries the pod's columns (rkt clears them).
            let [u, state, created, started, nets] = if i == 0 {
                pod_cols.clone()
            } else {
                Default::default()
            };
            let mut row = vec![u, app, image];
            if full {
                row.push(id);
            }
            row.extend([state, created, started, nets]);
            rows.push(row);
        }
    }
    print!("{}", tabwrite(&rows));
    for e in &errors {
        warn("list", e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tabwriter_like_go() {
        let rows = vec![
            vec!["UUID".to_string(), "APP".into(), "X".into()],
            vec!["0123456789".to_string(), "a".into(), "y".into()],
        ];
        assert_eq!(tabwrite(&rows), "UUID\t\tAPP\tX\n0123456789\ta\ty\n");
    }

    #[test]
    fn humanized() {
        let now = SystemTime::now();
        assert_eq!(humanize(Some(now)), "now");
        assert_eq!(
            humanize(Some(now - Duration::from_secs(125))),
            "2 minutes ago"
        );
    }

    #[test]
    fn go_time_layout() {
        assert_eq!(format_time(None), "0001-01-01 00:00:00 +0000 UTC");
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        let s = format_time(Some(t));
        assert!(s.contains(":01.5 "), "{s}");
    }
}
