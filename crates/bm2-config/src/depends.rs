//! The order apps start in when some depend on others (`depends_on`): names checked, cycles
//! refused, dependencies first.

use std::collections::{BTreeMap, BTreeSet};

use bm2_types::AppSpec;

/// Why the apps cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependsError {
    /// An app depends on a name that is neither in the set nor known otherwise.
    #[error("{app} depends_on unknown app {dep:?} (known: {})", known.join(", "))]
    Unknown {
        /// The app.
        app: String,
        /// The name it depends on.
        dep: String,
        /// The names that exist (but the app's own).
        known: Vec<String>,
    },
    /// Apps depend on each other in a ring; the path goes back to its start.
    #[error("depends_on cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Where the depth-first walk is with an app.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    New,
    Open,
    Done,
}
/// Visits app `i` depth-first, dependencies first, pushing it to `out` after them; an app met
/// again while open closes a cycle.
fn visit(
    i: usize,
    apps: &[AppSpec],
    index: &BTreeMap<&str, usize>,
    marks: &mut [Mark],
    path: &mut Vec<usize>,
    out: &mut Vec<usize>,
) -> Result<(), DependsError> {
    match marks[i] {
        Mark::Done => return Ok(()),
        Mark::Open => {
            let from = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut ring: Vec<String> =
                path[from..].iter().map(|&p| apps[p].name.clone()).collect();
            ring.push(apps[i].name.clone());
            return Err(DependsError::Cycle(ring));
        }
        Mark::New => {}
    }
    marks[i] = Mark::Open;
    path.push(i);
    for dep in apps[i].depends_on.keys() {
        if let Some(&j) = index.get(dep.as_str()) {
            visit(j, apps, index, marks, path, out)?;
        }
    }
    path.pop();
    marks[i] = Mark::Done;
    out.push(i);
    Ok(())
}

/// The indices of `apps` with every app after the apps of `apps` it depends on (apps without
/// dependencies between them keep the file's order). A dependency that is not in `apps` must be one `external` knows
/// (an app already managed): it is not ordered.
///
/// # Errors
/// An unknown dependency, or a cycle (named along its path).
pub fn start_order(apps: &[AppSpec], external: &[String]) -> Result<Vec<usize>, DependsError> {
    let index: BTreeMap<&str, usize> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| (a.name.as_str(), i))
        .collect();
    for app in apps {
        for dep in app.depends_on.keys() {
            if !index.contains_key(dep.as_str()) && !external.iter().any(|e| e == dep) {
                let known: BTreeSet<String> = apps
                    .iter()
                    .map(|a| a.name.clone())
                    .chain(external.iter().cloned())
                    .filter(|n| *n != app.name)
                    .collect();
                return Err(DependsError::Unknown {
                    app: app.name.clone(),
                    dep: dep.clone(),
                    known: known.into_iter().collect(),
                });
            }
        }
    }
    let mut marks = vec![Mark::New; apps.len()];
    let mut out = Vec::with_capacity(apps.len());
    for i in 0..apps.len() {
        visit(i, apps, &index, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// The names of `apps` in the order they stop: every app before the apps it depends on.
/// `depends` gives an app's dependencies. Apps in a cycle (which start refuses) keep their order.
pub fn stop_order<'a>(names: &[&'a str], depends: impl Fn(&str) -> Vec<String>) -> Vec<&'a str> {
    let specs: Vec<AppSpec> = names
        .iter()
        .map(|n| AppSpec {
            name: (*n).to_string(),
            depends_on: depends(n)
                .into_iter()
                .filter(|d| names.contains(&d.as_str()))
                .map(|d| (d, bm2_types::DependCondition::default()))
                .collect(),
            ..AppSpec::default()
        })
        .collect();
    match start_order(&specs, &[]) {
        Ok(order) => order.into_iter().rev().map(|i| names[i]).collect(),
        Err(_) => names.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bm2_types::DependCondition;

    fn app(name: &str, deps: &[&str]) -> AppSpec {
        AppSpec {
            name: name.into(),
            depends_on: deps
                .iter()
                .map(|d| ((*d).to_string(), DependCondition::Ready))
                .collect(),
            ..AppSpec::default()
        }
    }

    fn names(apps: &[AppSpec], order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| apps[i].name.clone()).collect()
    }

    #[test]
    fn dependencies_come_first() {
        let apps = [
            app("worker", &["api"]),
            app("api", &["db", "cache"]),
            app("other", &[]),
            app("cache", &[]),
            app("db", &[]),
        ];
        let order = start_order(&apps, &[]).unwrap();
        assert_eq!(
            names(&apps, &order),
            ["cache", "db", "api", "worker", "other"]
        );
    }

    #[test]
    fn a_cycle_is_named_along_its_path() {
        let apps = [
            app("api", &["worker"]),
            app("worker", &["api"]),
            app("db", &[]),
        ];
        let err = start_order(&apps, &[]).unwrap_err();
        assert_eq!(err.to_string(), "depends_on cycle: api -> worker -> api");
        let apps = [app("a", &["a"])];
        assert_eq!(
            start_order(&apps, &[]).unwrap_err().to_string(),
            "depends_on cycle: a -> a"
        );
        let apps = [
            app("x", &["a"]),
            app("a", &["b"]),
            app("b", &["c"]),
            app("c", &["a"]),
        ];
        assert_eq!(
            start_order(&apps, &[]).unwrap_err().to_string(),
            "depends_on cycle: a -> b -> c -> a"
        );
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_ones() {
        let apps = [app("api", &["dbx"]), app("db", &[]), app("cache", &[])];
        assert_eq!(
            start_order(&apps, &[]).unwrap_err().to_string(),
            "api depends_on unknown app \"dbx\" (known: cache, db)"
        );
        // A managed app is a known one, and is not ordered.
        let order = start_order(&apps, &["dbx".to_string()]).unwrap();
        assert_eq!(names(&apps, &order), ["api", "db", "cache"]);
    }

    #[test]
    fn stop_order_is_dependents_first() {
        let deps = |n: &str| match n {
            "api" => vec!["db".to_string()],
            "worker" => vec!["api".to_string(), "gone".to_string()],
            _ => Vec::new(),
        };
        assert_eq!(
            stop_order(&["db", "api", "worker", "x"], deps),
            ["x", "worker", "api", "db"]
        );
    }
}
