//! A container's security settings as the kubelet derives them
//! (`determineEffectiveSecurityContext`, `verifyRunAsNonRoot`): the container's
//! `securityContext` fields win over the pod's, `fsGroup` and `supplementalGroups` become
//! supplemental groups, and `runAsNonRoot` is checked against the user the container would
//! run as before it is created.

use k8s_openapi::api::core::v1::{Container, Pod};
use kybernetes_runtime::{ContainerSecurity, Image};

/// The runtime's security settings for `container` of `pod`.
pub(crate) fn container_security(pod: &Pod, container: &Container) -> ContainerSecurity {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    let mut supplemental_groups = Vec::new();
    supplemental_groups.extend(pod_sc.fs_group);
    supplemental_groups.extend(pod_sc.supplemental_groups.iter().flatten().copied());
    let capabilities = sc.capabilities.unwrap_or_default();
    ContainerSecurity {
        run_as_user: sc.run_as_user.or(pod_sc.run_as_user),
        run_as_group: sc.run_as_group.or(pod_sc.run_as_group),
        supplemental_groups,
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        privileged: sc.privileged.unwrap_or(false),
        add_capabilities: capabilities.add.unwrap_or_default(),
        drop_capabilities: capabilities.drop.unwrap_or_default(),
        // Only an explicit `allowPrivilegeEscalation: false` asks for no_new_privs.
        no_new_privs: sc.allow_privilege_escalation == Some(false),
    }
}

/// Refuses `container` when `runAsNonRoot` is set and it would run as root: its
/// `runAsUser` is 0, or it has none and `image` names uid 0 or no user at all. An image user
/// given by name cannot be verified and is refused too. The messages are the kubelet's.
pub(crate) fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image: &Image,
    pod_desc: &str,
) -> Result<(), String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    let name = &container.name;
    if let Some(uid) = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user))
    {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: \"{pod_desc}\", container: {name})"
            ));
        }
        return Ok(());
    }
    match (image.uid, image.username.as_deref()) {
        (Some(0), _) | (None, None) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod_desc}\", container: {name})"
        )),
        (None, Some(user)) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: \"{pod_desc}\", container: {name})"
        )),
        (Some(_), _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, PodSpec, SecurityContext};

    fn pod(sc: PodSecurityContext) -> Pod {
        Pod {
            spec: Some(PodSpec {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(sc: SecurityContext) -> Container {
        Container {
            name: "c".into(),
            security_context: Some(sc),
            ..Default::default()
        }
    }

    #[test]
    fn the_container_wins_and_groups_gather() {
        let p = pod(PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![4000]),
            ..Default::default()
        });
        let c = container(SecurityContext {
            run_as_user: Some(1001),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        });
        let s = container_security(&p, &c);
        assert_eq!(s.run_as_user, Some(1001));
        assert_eq!(s.run_as_group, Some(3000));
        assert_eq!(s.supplemental_groups, vec![2000, 4000]);
        assert!(s.no_new_privs);
        assert_eq!(s.drop_capabilities, vec!["ALL".to_string()]);
        assert!(!container_security(&Pod::default(), &Container::default()).no_new_privs);
    }

    #[test]
    fn run_as_non_root_refuses_root_in_the_kubelets_words() {
        let p = pod(PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        });
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let root = Image::default();
        let err = verify_run_as_non_root(&p, &c, &root, "p_ns(u)").expect_err("root");
        assert_eq!(
            err,
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)"
        );
        let named = Image {
            username: Some("app".into()),
            ..Default::default()
        };
        let err = verify_run_as_non_root(&p, &c, &named, "p").expect_err("name");
        assert!(err.contains("non-numeric user (app)"), "{err}");
        let numeric = Image {
            uid: Some(1000),
            ..Default::default()
        };
        assert!(verify_run_as_non_root(&p, &c, &numeric, "p").is_ok());
        let zero = container(SecurityContext {
            run_as_user: Some(0),
            ..Default::default()
        });
        let err = verify_run_as_non_root(&p, &zero, &numeric, "p").expect_err("uid 0");
        assert!(err.contains("runAsUser breaks non-root policy"), "{err}");
    }
}
