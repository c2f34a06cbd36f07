//! `ListPodSandbox` / `ListContainers` filters: every set field must match; ids match exactly or
//! as a prefix; a label selector requires each key with exactly that value.
//!
//! Checked against containerd `internal/cri/server/{sandbox_list.go,container_list.go}`
//! (`filterCRISandboxes`, `filterCRIContainers`).

use std::collections::HashMap;

use cri_api::runtime::v1::{ContainerFilter, PodSandboxFilter};

/// The fields a filter looks at.
pub struct Subject<'a> {
    pub id: &'a str,
    pub state: i32,
    pub sandbox_id: &'a str,
    pub labels: &'a HashMap<String, String>,
}

fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn container_matches(filter: Option<&ContainerFilter>, s: &Subject<'_>) -> bool {
    let Some(f) = filter else { return true };
    id_matches(&f.id, s.id)
        && id_matches(&f.pod_sandbox_id, s.sandbox_id)
        && f.state.as_ref().is_none_or(|st| st.state == s.state)
        && labels_match(&f.label_selector, s.labels)
}

pub fn sandbox_matches(filter: Option<&PodSandboxFilter>, s: &Subject<'_>) -> bool {
    let Some(f) = filter else { return true };
    id_matches(&f.id, s.id)
        && f.state.as_ref().is_none_or(|st| st.state == s.state)
        && labels_match(&f.label_selector, s.labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::runtime::v1::{ContainerState, ContainerStateValue};

    fn labels() -> HashMap<String, String> {
        HashMap::from([
            ("io.kubernetes.pod.name".to_string(), "web".to_string()),
            (
                "io.kubernetes.container.name".to_string(),
                "app".to_string(),
            ),
        ])
    }

    #[test]
    fn every_set_field_must_match() {
        let l = labels();
        let s = Subject {
            id: "abcdef",
            state: ContainerState::ContainerRunning as i32,
            sandbox_id: "123456",
            labels: &l,
        };
        assert!(container_matches(None, &s));
        let mut f = ContainerFilter {
            id: "abc".into(),
            pod_sandbox_id: "123".into(),
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            label_selector: HashMap::from([(
                "io.kubernetes.container.name".to_string(),
                "app".to_string(),
            )]),
        };
        assert!(container_matches(Some(&f), &s));
        f.label_selector
            .insert("io.kubernetes.pod.name".into(), "other".into());
        assert!(!container_matches(Some(&f), &s));
        f.label_selector.clear();
        f.state = Some(ContainerStateValue {
            state: ContainerState::ContainerExited as i32,
        });
        assert!(!container_matches(Some(&f), &s));
        f.state = None;
        f.pod_sandbox_id = "999".into();
        assert!(!container_matches(Some(&f), &s));
        f.pod_sandbox_id.clear();
        f.id = "x".into();
        assert!(!container_matches(Some(&f), &s));
    }

    #[test]
    fn sandbox_filters() {
        let l = labels();
        let s = Subject {
            id: "s1",
            state: 0,
            sandbox_id: "s1",
            labels: &l,
        };
        let f = PodSandboxFilter {
            id: "s".into(),
            ..Default::default()
        };
        assert!(sandbox_matches(Some(&f), &s));
        let f = PodSandboxFilter {
            id: "t".into(),
            ..Default::default()
        };
        assert!(!sandbox_matches(Some(&f), &s));
    }
}
